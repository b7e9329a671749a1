"""Releases: only bundles signed by a trusted key, intact and unexpired, are kept and served."""

from __future__ import annotations

from ota.keys import generate_private_key, raw_public_key
from tests.rigs.device_signing import signed_headers


def test_trusted_signed_bundle_is_stored(trusted, make_bundle, upload, client, tokens):
    path = make_bundle("1.1.0", 11)
    resp = upload(path)
    assert resp.status_code == 201, resp.text
    rel = resp.json()
    assert rel["version"] == "1.1.0" and rel["sequence"] == 11 and rel["key_id"] == trusted
    assert rel["bundle_size"] == path.stat().st_size
    listed = client.get("/api/v1/releases", headers=tokens["reader"]).json()
    assert [r["id"] for r in listed] == [rel["id"]]


def test_unknown_key_is_refused(trusted, make_bundle, upload):
    resp = upload(make_bundle("1.1.0", 11, key=generate_private_key()))
    assert resp.status_code == 422
    assert "not a trusted release key" in resp.json()["detail"]


def test_revoked_key_is_refused(trusted, make_bundle, upload, client, tokens):
    client.post(f"/api/v1/keys/{trusted}/revoke", headers=tokens["operator"])
    resp = upload(make_bundle("1.1.0", 11))
    assert resp.status_code == 422 and "revoked" in resp.json()["detail"]


def test_tampered_file_is_refused(trusted, make_bundle, upload):
    path = make_bundle("1.1.0", 11, app_text="X = 1\n")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"X = 1", b"X = 2"))
    resp = upload(path)
    assert resp.status_code == 422 and "does not match its SHA-256" in resp.json()["detail"]


def test_bad_signature_and_trailing_bytes_are_refused(trusted, make_bundle, upload):
    path = make_bundle("1.1.0", 11)
    data = path.read_bytes()
    assert upload_bytes(upload, path, data + b"extra").json()["detail"].endswith(
        "bundle is longer than its manifest declares")
    from ota.bundle import HEADER_SIZE

    i = HEADER_SIZE - 64  # the first byte of the raw signature in the bundle header
    flipped = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    resp = upload_bytes(upload, path, flipped)
    assert resp.status_code == 422 and "signature" in resp.json()["detail"]


def upload_bytes(upload, path, data):
    path.write_bytes(data)
    return upload(path)


def test_expired_manifest_is_refused(trusted, make_bundle, upload):
    resp = upload(make_bundle("1.1.0", 11, expires_in=-5))
    assert resp.status_code == 422 and "expired" in resp.json()["detail"]


def test_sequence_cannot_be_reused(trusted, make_bundle, upload):
    assert upload(make_bundle("1.1.0", 11)).status_code == 201
    resp = upload(make_bundle("1.2.0", 11))
    assert resp.status_code == 409 and "sequence 11" in resp.json()["detail"]


def test_garbage_upload_is_a_clear_422(trusted, upload, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a bundle at all")
    resp = upload(junk)
    assert resp.status_code == 422 and "bad magic" in resp.json()["detail"]


def test_reader_cannot_upload_or_trust(client, tokens, release_key):
    resp = client.post("/api/v1/keys", json={"public_key": raw_public_key(release_key).hex()},
                       headers=tokens["reader"])
    assert resp.status_code == 403
    assert client.post("/api/v1/releases", content=b"x", headers=tokens["reader"]).status_code \
        == 403


def test_bundle_download_supports_range_and_refuses_bad_ranges(trusted, make_bundle, upload,
                                                              register, client):
    path = make_bundle("1.1.0", 11)
    rel = upload(path).json()
    creds = register()
    url = f"/device/v1/releases/{rel['id']}/bundle"
    data = path.read_bytes()

    def get(extra: dict[str, str]):
        headers = signed_headers(creds["device_id"], creds["secret"], "GET", url, b"")
        return client.get(url, headers={**headers, **extra})

    whole = get({})
    assert whole.status_code == 200 and whole.content == data
    part = get({"Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == data[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    assert get({"Range": f"bytes={len(data) + 10}-"}).status_code == 416
    unsigned = client.get(url)
    assert unsigned.status_code == 401
    headers = signed_headers(creds["device_id"], creds["secret"], "GET", url, b"")
    assert client.get(url, headers=headers).status_code == 200
    replay = client.get(url, headers=headers)  # the download's nonce was committed
    assert replay.status_code == 401 and replay.json()["detail"] == "replayed nonce"
