"""Schemathesis over the OpenAPI spec: generated requests, signed or authorised, never get a 5xx."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.rigs.device_signing import signed_headers

EXAMPLES_PER_OPERATION = 30


@pytest.mark.slow
def test_no_operation_answers_generated_input_with_a_server_error(client, tokens, register):
    creds = register()
    operator = tokens["operator"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case) -> None:
            path = case.formatted_path
            if path.endswith("/telemetry/stream"):
                # The live stream is endless by design; bound it so the request returns.
                query = dict(case.query or {})
                query["timeout_s"] = min(float(query.get("timeout_s") or 1), 1.0)
                query["poll_s"] = 0.2
                case.query = query
            if case.query:
                path += "?" + urlencode(case.query, doseq=True)
            body = json.dumps(case.body).encode() if isinstance(case.body, dict | list) else b""
            if path.startswith("/device/"):
                headers = signed_headers(creds["device_id"], creds["secret"], case.method, path,
                                         body)
            else:
                headers = dict(operator, **{"Content-Type": "application/json"})
            resp = client.request(case.method, path, content=body or None, headers=headers)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {path} {body[:200]!r} -> {resp.status_code}")

        exercise()
    assert failures == []
