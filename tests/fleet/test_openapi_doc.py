"""The OpenAPI document's manners (issue 14): security schemes, an example for every request body,
the error answers of every operation, one error body; an unknown query parameter is a 422."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from fleet.errors import ErrorBody
from tests.rigs.device_signing import signed_headers

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

METHODS = ("get", "put", "post", "delete", "patch")


def operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def assert_error_body(resp, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    ErrorBody.model_validate(body)
    assert body["status"] == status
    return body


def test_security_schemes_are_declared_and_every_operation_names_its_own(client):
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiToken"] == {**schemes["apiToken"], "type": "http", "scheme": "bearer"}
    assert {(s["in"], s["name"]) for k, s in schemes.items() if k != "apiToken"} == {
        ("header", "X-Device-Id"), ("header", "X-Timestamp"), ("header", "X-Nonce"),
        ("header", "X-Signature")}
    for path, method, op in operations(doc):
        if path.startswith("/api/v1/"):
            [requirement] = op["security"]
            roles = requirement["apiToken"]
            assert roles and set(roles) <= {"operator", "technician", "reader"}, (path, method)
        elif path == "/device/v1/enroll":
            assert op["security"] == []  # the enrollment code is the proof
        else:
            assert path.startswith("/device/v1/")
            assert op["security"] == [{"deviceId": [], "deviceTimestamp": [], "deviceNonce": [],
                                       "deviceSignature": []}], path
    ops = {(p, m): op for p, m, op in operations(doc)}
    assert ops["/api/v1/devices", "get"]["security"] == [
        {"apiToken": ["operator", "technician", "reader"]}]
    assert ops["/api/v1/devices/{device_id}/decommission", "post"]["security"] == [
        {"apiToken": ["operator"]}]
    assert ops["/api/v1/telemetry/readings", "get"]["security"] == [
        {"apiToken": ["operator", "reader"]}]


def test_every_operation_lists_its_errors_each_with_the_one_error_body(client):
    doc = client.get("/openapi.json").json()
    error_schema = doc["components"]["schemas"]["ErrorBody"]
    assert set(error_schema["required"]) == {"detail", "status", "error"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, method, op in operations(doc):
        codes = {int(c) for c in op["responses"]}
        assert 422 in codes, (path, method)
        if op.get("requestBody"):
            assert {400, 413} <= codes, (path, method)
        if path != "/device/v1/enroll":
            assert {401, 403} <= codes, (path, method)
        if "{" in path:
            assert 404 in codes, (path, method)
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert response["content"] == {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"}}}, (path, method, code)
                assert response["description"]
    ops = {(p, m): op for p, m, op in operations(doc)}
    assert "409" in ops["/api/v1/devices", "post"]["responses"]  # a route's own, kept
    assert {"403", "409", "410", "429"} <= set(ops["/device/v1/enroll", "post"]["responses"])


def test_every_request_body_has_an_example(client):
    doc = client.get("/openapi.json").json()
    missing = []
    for path, method, op in operations(doc):
        body = op.get("requestBody")
        if body is None:
            continue
        for media, content in body["content"].items():
            if media == "application/octet-stream":
                continue  # a signed release bundle: binary, made by `lamplighter release build`
            schema = resolve(doc, content["schema"])
            examples = content.get("examples") or schema.get("examples")
            if not examples:
                missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_examples_are_valid_bodies(client):
    """Each model's example is a body its route accepts (checked against the model itself)."""
    from fleet import schemas

    for model in (schemas.DeviceRegistration, schemas.DeviceBatch, schemas.ConfigBody,
                  schemas.CommandIn, schemas.EnrollRequest, schemas.CheckIn, schemas.KeyIn,
                  schemas.KeyStatementIn, schemas.RolloutIn):
        for example in model.model_json_schema()["examples"]:
            TypeAdapter(model).validate_python(example)


def test_every_error_has_the_one_body(client, tokens, register):
    operator = tokens["operator"]
    body = assert_error_body(client.get("/api/v1/devices/ll-000000000000", headers=operator),
                             404)
    assert body["error"] == "not_found" and "ll-000000000000" in body["detail"]
    body = assert_error_body(client.get("/api/v1/devices"), 401)
    assert body["error"] == "unauthorized" and "API token" in body["detail"]
    body = assert_error_body(client.post("/api/v1/devices", json={"pole_id": "P-1"},
                                         headers=tokens["reader"]), 403)
    body = assert_error_body(client.post("/api/v1/devices", json={"pole_id": "P-1", "x": 1},
                                         headers=operator), 422)
    assert body["error"] == "invalid" and body["detail"][0]["loc"] == ["body", "x"]
    body = assert_error_body(client.post("/api/v1/devices", content=b"\xff{",
                                         headers=dict(operator, **{
                                             "Content-Type": "application/json"})), 400)
    body = assert_error_body(client.post("/api/v1/devices", content=b"x" * 2_000_000,
                                         headers=operator), 413)
    assert body["error"] == "too_large"
    assert_error_body(client.get("/nowhere"), 404)
    assert_error_body(client.delete("/api/v1/devices"), 405)
    creds = register()
    assert_error_body(client.post("/api/v1/devices", json={"pole_id": creds["pole_id"]},
                                  headers=operator), 409)


def test_a_check_in_body_that_is_not_utf8_is_a_422_not_a_server_error(client, register):
    creds = register()
    raw = b'{"fw_version": "\x80"}'
    headers = signed_headers(creds["device_id"], creds["secret"], "POST", "/device/v1/checkin",
                             raw)
    body = assert_error_body(client.post("/device/v1/checkin", content=raw, headers=headers), 422)
    assert body["detail"][0]["loc"][0] == "body"


def test_an_unknown_query_parameter_is_a_422_naming_it(client, tokens, register):
    operator = tokens["operator"]
    assert client.get("/api/v1/devices?limit=5&group=default", headers=operator).status_code == 200
    body = assert_error_body(client.get("/api/v1/devices?limt=5&group=x&grup=y",
                                        headers=operator), 422)
    assert [e["loc"] for e in body["detail"]] == [["query", "limt"], ["query", "grup"]]
    assert body["detail"][0]["msg"] == "unknown query parameter"
    # Parameters declared by a route's dependencies (telemetry's filters) are known.
    assert client.get("/api/v1/telemetry/readings?metric=lux&device=a&device=b&limit=3",
                      headers=operator).status_code == 200
    body = assert_error_body(client.get("/api/v1/telemetry/readings?metrc=lux",
                                        headers=operator), 422)
    assert body["detail"][0]["loc"] == ["query", "metrc"]
    body = assert_error_body(client.get("/api/v1/audit?actr=x", headers=operator), 422)
    assert body["detail"][0]["loc"][-1] == "actr"

    creds = register()
    for path in ("/device/v1/checkin?debug=1", "/device/v1/telemetry?debug=1",
                 "/device/v1/time?debug=1"):
        raw = json.dumps({"readings": [{"seq": 1, "ts": 1.0, "m": "lux", "v": 1.0}]}
                         if "telemetry" in path else {}).encode()
        headers = signed_headers(creds["device_id"], creds["secret"], "POST", path, raw)
        body = assert_error_body(client.post(path, content=raw, headers=headers), 422)
        assert body["detail"][0]["loc"] == ["query", "debug"], path
    # A signed request without one is served as before (signed over path?query).
    path = "/device/v1/checkin"
    raw = b"{}"
    resp = client.post(path, content=raw,
                       headers=signed_headers(creds["device_id"], creds["secret"], "POST", path,
                                              raw))
    assert resp.status_code == 200, resp.text


def test_a_bundle_download_refuses_a_bad_range_with_the_error_body(trusted, make_bundle, upload,
                                                                   register, client):
    rel = upload(make_bundle("1.1.0", 11)).json()
    creds = register()
    url = f"/device/v1/releases/{rel['id']}/bundle"

    def get(extra: dict[str, str]):
        headers = signed_headers(creds["device_id"], creds["secret"], "GET", url, b"")
        return client.get(url, headers={**headers, **extra})

    assert get({"Range": "bytes=10-"}).status_code == 206
    body = assert_error_body(get({"Range": "bytes=99999999-"}), 416)
    assert "not satisfiable" in body["detail"]
    assert_error_body(get({"Range": "pages=1-2"}), 400)
