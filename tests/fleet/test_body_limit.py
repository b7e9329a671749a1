"""Every endpoint has a body size limit: a 413 that names it, before the body is read."""

from __future__ import annotations

import json

from tests.rigs.device_signing import signed_headers

LIMIT = 1024 * 1024  # LAMPLIGHTER_MAX_BODY_BYTES' default


def test_a_fifty_megabyte_configuration_is_refused_naming_the_limit(client, tokens):
    body = json.dumps({"config": {"x": "a" * (50 * 1024 * 1024)}}).encode()
    resp = client.put("/api/v1/groups/default/config", content=body,
                      headers={**tokens["operator"], "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["detail"] == (f"request body larger than {LIMIT} bytes, the limit for "
                                     "this endpoint")


def test_a_body_without_a_length_is_cut_off_at_the_limit(client, tokens):
    def chunks():
        for _ in range(40):
            yield b"a" * 65536  # 2.5 MB, chunked: no Content-Length to refuse up front

    resp = client.put("/api/v1/groups/default/config", content=chunks(),
                      headers={**tokens["operator"], "Content-Type": "application/json"})
    assert resp.status_code == 413 and str(LIMIT) in resp.json()["detail"]


def test_an_oversized_device_request_is_refused_before_its_signature_is_checked(register,
                                                                              client):
    creds = register()
    body = b'{"readings":[' + b'{"seq":1},' * 150_000 + b'{"seq":2}]}'
    headers = signed_headers(creds["device_id"], creds["secret"], "POST",
                             "/device/v1/telemetry", body)
    resp = client.post("/device/v1/telemetry", content=body, headers=headers)
    assert resp.status_code == 413


def test_a_release_upload_may_be_as_large_as_a_bundle(client, tokens, monkeypatch):
    """Uploads have their own, larger limit (LAMPLIGHTER_MAX_BUNDLE_BYTES, 8 MiB): a 2 MB
    body reaches the bundle check (422: not a bundle) instead of the 1 MiB limit."""
    resp = client.post("/api/v1/releases", content=b"\0" * (2 * 1024 * 1024),
                       headers={**tokens["operator"],
                                "Content-Type": "application/octet-stream"})
    assert resp.status_code == 422, resp.text


def test_an_ordinary_request_passes(client, tokens):
    resp = client.put("/api/v1/groups/default/config",
                      json={"config": {"dimming": {"dim_level": 20}}}, headers=tokens["operator"])
    assert resp.status_code == 200, resp.text
