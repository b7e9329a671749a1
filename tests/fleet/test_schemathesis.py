"""Schemathesis over the whole OpenAPI document, in-process: its coverage and fuzzing phases find
no server error, no status code the document does not list and no reply that breaks its schema.

/api/v1 is called with an operator token; /device/v1 requests are signed as a registered node
(an ASGI wrapper signs each request as it reaches the app, over the exact path?query and body
schemathesis sent, as a node would). A fixed seed keeps the run deterministic.

Run alone, with the figures: `.venv/bin/pytest tests/fleet/test_schemathesis.py -s -m slow`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, from_schema
from schemathesis.engine import events as ev
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.rigs.device_signing import signed_headers

SEED = 14
MAX_EXAMPLES = 100  # fuzzing phase, per operation (schemathesis's default)
CHECKS = ("not_a_server_error", "status_code_conformance", "response_schema_conformance")
SIGNATURE_HEADERS = {b"authorization", b"x-device-id", b"x-timestamp", b"x-nonce",
                     b"x-signature"}


class SignDeviceRequests:
    """Signs every /device/v1 request as `creds`' node (replacing whatever signature headers it
    carried); other requests pass unchanged."""

    def __init__(self, app: ASGIApp, creds: dict[str, Any]) -> None:
        self.app = app
        self.creds = creds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/device/v1/"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        url = Request(scope).url  # the path?query the server verifies (fleet.auth.signed_path)
        path = url.path + (f"?{url.query}" if url.query else "")
        signed = signed_headers(self.creds["device_id"], self.creds["secret"], scope["method"],
                                path, body)
        signed.pop("Content-Type")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in SIGNATURE_HEADERS]
        headers += [(k.lower().encode(), v.encode()) for k, v in signed.items()]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


class LeaveStreams:
    """A client that reads a server-sent event stream's first chunk and leaves: the live stream
    (/api/v1/telemetry/stream) is endless by design, and schemathesis would wait for its end."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        left = anyio.Event()
        streaming = False

        async def receive_until_left() -> Message:
            if left.is_set():
                return {"type": "http.disconnect"}
            if not streaming:
                return await receive()
            await left.wait()
            return {"type": "http.disconnect"}

        async def send_first_chunk(message: Message) -> None:
            nonlocal streaming
            if left.is_set():
                return
            if message["type"] == "http.response.start":
                streaming = any(k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                                for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body" and streaming:
                message = {**message, "more_body": False}
                left.set()
            await send(message)

        await self.app(scope, receive_until_left, send_first_chunk)


def run_schemathesis(app: ASGIApp, operator: dict[str, str]) -> tuple[int, list[str]]:
    """Run the coverage and fuzzing phases; the number of cases and the failures found."""
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "headers": operator,
        "phases": {"examples": {"enabled": False}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": False,
                       "with-security-parameters": False, "database": "none"},
        "workers": 1,
    })
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    cases = 0
    failures: Counter[str] = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, ev.FatalError):
            raise event.exception
        if isinstance(event, ev.NonFatalError):
            failures[f"error: {event.label}: {event.info.message}"] += 1
        if not isinstance(event, ev.ScenarioFinished):
            continue
        cases += len(event.recorder.cases)
        for nodes in event.recorder.checks.values():
            for node in nodes:
                if node.status == Status.FAILURE and node.failure_info is not None:
                    failure = node.failure_info.failure
                    failures[f"{event.recorder.label}: {node.name}: {failure.title}: "
                             f"{failure.message[:300]}"] += 1
    return cases, [f"{n}x {text}" for text, n in sorted(failures.items())]


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_schemathesis_finds_nothing(client, tokens, register):
    creds = register()
    app = LeaveStreams(SignDeviceRequests(client.app, creds))
    cases, failures = run_schemathesis(app, tokens["operator"])
    print(f"\nschemathesis: {cases} cases, {len(failures)} distinct failures")
    for failure in failures:
        print("  " + failure)
    assert cases > 1000
    assert failures == []
