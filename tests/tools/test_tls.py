"""The fleet server's TLS: `server init-tls`, `server run` over HTTPS, start_fleet_server, and
the operator CLI trusting the server's CA."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from fleet.core import settings as fleet_settings
from fleet.core.tls import TlsFiles, init_tls, make_ca, make_server_cert
from tools.cli.main import app
from tools.emulator.fleet_process import FleetServer, free_port, start_fleet_server


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh LAMPLIGHTER_DATA_DIR (no TLS files, no CA named in the environment)."""
    data = tmp_path / "var"
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(data))
    for name in ("LAMPLIGHTER_TLS_DIR", "LAMPLIGHTER_CA", "LAMPLIGHTER_SERVER",
                 "LAMPLIGHTER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    fleet_settings.get_settings.cache_clear()
    yield data
    fleet_settings.get_settings.cache_clear()


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input)


def fingerprint(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def san(cert: x509.Certificate) -> set[str]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
            | set(names.get_values_for_type(x509.DNSName)))


def pem_files(directory: Path, name: str, cert, key, ca=None) -> tuple[Path, Path]:
    """Write a certificate (chain: + ca) and its key as PEM files; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    chain = cert.public_bytes(serialization.Encoding.PEM)
    if ca is not None:
        chain += ca.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(chain)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# `lamplighter server init-tls`

def test_init_tls_makes_a_ca_and_a_server_certificate_for_the_hosts(data_dir: Path) -> None:
    result = invoke("server", "init-tls", "--host", "lamps.example.org", "--host", "10.0.0.5")
    assert result.exit_code == 0, result.output
    files = TlsFiles(data_dir / "tls")
    assert files.exists() and files.ca_key.exists()
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf, *chain = x509.load_pem_x509_certificates(files.server_cert.read_bytes())
    leaf.verify_directly_issued_by(ca)  # raises unless the CA signed it
    assert chain == [ca]  # server.pem carries the CA after the certificate
    assert san(leaf) == {"lamps.example.org", "10.0.0.5"}
    assert str(files.ca_cert) in result.output
    assert f"CA SHA-256 fingerprint: {fingerprint(files.ca_cert.read_bytes())}" in result.output
    assert "provisioned" in result.output  # what to do next: nodes get the CA then


def test_init_tls_defaults_to_localhost_and_127_0_0_1(data_dir: Path) -> None:
    assert invoke("server", "init-tls").exit_code == 0
    leaf = x509.load_pem_x509_certificates((data_dir / "tls" / "server.pem").read_bytes())[0]
    assert san(leaf) == {"localhost", "127.0.0.1"}
    assert ipaddress.ip_address("127.0.0.1")  # the address every local URL uses


def test_running_init_tls_again_keeps_the_ca_unless_new_ca(data_dir: Path) -> None:
    files = TlsFiles(data_dir / "tls")
    assert invoke("server", "init-tls").exit_code == 0
    first_ca = files.ca_cert.read_bytes()
    first_server = files.server_cert.read_bytes()

    again = invoke("server", "init-tls", "--host", "lamps.example.org")
    assert again.exit_code == 0, again.output
    assert files.ca_cert.read_bytes() == first_ca
    assert files.server_cert.read_bytes() != first_server  # a new server certificate
    assert "kept" in again.output and fingerprint(first_ca) in again.output

    declined = invoke("server", "init-tls", "--new-ca", input="n\n")
    assert declined.exit_code == 1
    assert "re-provisioned" in declined.output  # the warning comes before the question
    assert files.ca_cert.read_bytes() == first_ca

    replaced = invoke("server", "init-tls", "--new-ca", "--yes")
    assert replaced.exit_code == 0, replaced.output
    assert "re-provisioned" in replaced.output
    assert fingerprint(files.ca_cert.read_bytes()) != fingerprint(first_ca)
    leaf = x509.load_pem_x509_certificates(files.server_cert.read_bytes())[0]
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(files.ca_cert.read_bytes()))


def test_init_tls_imports_the_operators_own_certificate(data_dir: Path, tmp_path: Path) -> None:
    ca, ca_key = make_ca("City of Harbour CA")
    cert, key = make_server_cert(ca, ca_key, ["fleet.harbour.example"])
    cert_path, key_path = pem_files(tmp_path / "own", "server", cert, key)
    ca_path = tmp_path / "own" / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    result = invoke("server", "init-tls", "--cert", str(cert_path), "--key", str(key_path),
                    "--ca", str(ca_path))
    assert result.exit_code == 0, result.output
    files = TlsFiles(data_dir / "tls")
    assert files.ca_cert.read_bytes() == ca_path.read_bytes()
    assert files.server_key.read_bytes() == key_path.read_bytes()
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert fingerprint(ca_path.read_bytes()) in result.output
    # without the CA's key, a plain re-run cannot issue a certificate and says so
    rerun = invoke("server", "init-tls")
    assert rerun.exit_code == 2 and "imported" in rerun.output
    assert files.ca_cert.read_bytes() == ca_path.read_bytes()


def test_init_tls_refuses_a_certificate_whose_key_does_not_match(data_dir: Path,
                                                                 tmp_path: Path) -> None:
    ca, ca_key = make_ca()
    cert, _ = make_server_cert(ca, ca_key, ["localhost"])
    _, other_key = make_server_cert(ca, ca_key, ["localhost"])
    cert_path, _ = pem_files(tmp_path / "own", "server", cert, other_key)
    _, wrong_key = pem_files(tmp_path / "own", "other", cert, other_key)
    ca_path = tmp_path / "own" / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    result = invoke("server", "init-tls", "--cert", str(cert_path), "--key", str(wrong_key),
                    "--ca", str(ca_path))
    assert result.exit_code == 2
    assert "does not match the certificate" in result.output
    assert not (data_dir / "tls" / "server.pem").exists()

    stranger, stranger_key = make_ca("someone else")
    (tmp_path / "own" / "stranger.pem").write_bytes(
        stranger.public_bytes(serialization.Encoding.PEM))
    good_cert, good_key = pem_files(tmp_path / "own", "good", *make_server_cert(
        ca, ca_key, ["localhost"]))
    refused = invoke("server", "init-tls", "--cert", str(good_cert), "--key", str(good_key),
                     "--ca", str(tmp_path / "own" / "stranger.pem"))
    assert refused.exit_code == 2 and "was not signed by the CA" in refused.output

    partial = invoke("server", "init-tls", "--cert", str(good_cert))
    assert partial.exit_code == 2 and "needs all three" in partial.output


# `lamplighter server run`

def test_server_run_without_tls_files_says_how_to_get_them(data_dir: Path) -> None:
    result = invoke("server", "run")
    assert result.exit_code == 2
    assert "lamplighter server init-tls" in result.output
    assert "--behind-tls-proxy" in result.output
    assert not (data_dir / "fleet.db").exists()  # refused before touching the database

    missing = invoke("server", "run", "--cert", str(data_dir / "none.pem"),
                     "--key", str(data_dir / "none.key"))
    assert missing.exit_code == 2 and "none.pem" in missing.output

    mixed = invoke("server", "run", "--behind-tls-proxy", "--cert", str(data_dir / "x.pem"))
    assert mixed.exit_code == 2 and "plain HTTP" in mixed.output

    assert invoke("server", "init-tls").exit_code == 0
    tls = data_dir / "tls"
    mismatched = invoke("server", "run", "--key", str(tls / "ca.key"))
    assert mismatched.exit_code == 2 and "cannot serve HTTPS with" in mismatched.output
    assert not (data_dir / "fleet.db").exists()


def _serve(args: list[str], env: dict[str, str], port: int, verify) -> tuple[
        subprocess.Popen[str], httpx.Response]:
    proc = subprocess.Popen([sys.executable, "-c", "from tools.cli.main import app; app()",
                             "server", "run", "--port", str(port), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    scheme = "http" if "--behind-tls-proxy" in args else "https"
    deadline = time.monotonic() + 30
    while True:
        try:
            return proc, httpx.get(f"{scheme}://127.0.0.1:{port}/api/v1/healthz", verify=verify,
                                   timeout=2)
        except httpx.ConnectError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[0]) from None
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        return proc.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def test_server_run_serves_https_with_the_init_tls_files(data_dir: Path) -> None:
    assert invoke("server", "init-tls").exit_code == 0
    ca = ssl.create_default_context(cafile=str(data_dir / "tls" / "ca.pem"))
    env = dict(os.environ, COLUMNS="200")
    port = free_port()
    proc, resp = _serve([], env, port, ca)
    output = _stop(proc)
    assert resp.status_code == 200
    assert f"fleet server on https://127.0.0.1:{port}" in output


def test_server_run_behind_a_tls_proxy_serves_plain_http_and_warns(data_dir: Path) -> None:
    env = dict(os.environ, COLUMNS="200")
    port = free_port()
    proc, resp = _serve(["--behind-tls-proxy"], env, port, True)
    output = _stop(proc)
    assert resp.status_code == 200
    assert f"fleet server on http://127.0.0.1:{port}" in output
    assert "only through the TLS terminator" in output


# start_fleet_server and the operator CLI

@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[FleetServer]:
    server = start_fleet_server(tmp_path / "server")
    yield server
    server.stop()


def test_start_fleet_server_speaks_https_verified_by_its_ca(tls_server: FleetServer,
                                                           tmp_path: Path) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert tls_server.tls is not None and tls_server.verify == str(tls_server.tls.ca_cert)
    with tls_server.client() as client:
        assert client.get("/api/v1/healthz").status_code == 200
    other = TlsFiles(tmp_path / "other-ca")
    init_tls(other)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/api/v1/healthz",
                  verify=ssl.create_default_context(cafile=str(other.ca_cert)))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/api/v1/healthz")  # the system's CAs do not know it


def test_start_fleet_server_keeps_its_tls_files(tmp_path: Path) -> None:
    first = start_fleet_server(tmp_path / "server")
    first.stop()
    assert first.tls is not None
    ca = first.tls.ca_cert.read_bytes()
    second = start_fleet_server(tmp_path / "server")
    try:
        assert second.tls is not None and second.tls.ca_cert.read_bytes() == ca
        assert second.ca_der == first.ca_der and second.ca_der is not None
    finally:
        second.stop()


def test_start_fleet_server_without_tls_serves_plain_http(tmp_path: Path) -> None:
    # plain HTTP on purpose: the mode behind a TLS terminator
    server = start_fleet_server(tmp_path / "server", tls=False)
    try:
        assert server.url.startswith("http://") and server.tls is None
        assert server.verify is True and server.ca_der is None
        with server.client() as client:
            assert client.get("/api/v1/healthz").status_code == 200
    finally:
        server.stop()


def test_the_operator_cli_trusts_the_ca_it_is_given(tls_server: FleetServer, data_dir: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMPLIGHTER_SERVER", tls_server.url)
    monkeypatch.setenv("LAMPLIGHTER_TOKEN", tls_server.operator_token)
    monkeypatch.setenv("COLUMNS", "300")

    monkeypatch.setenv("LAMPLIGHTER_CA", tls_server.verify)
    ok = invoke("release", "statements")
    assert ok.exit_code == 0, ok.output
    assert "next statement: --serial 1" in ok.output

    monkeypatch.delenv("LAMPLIGHTER_CA")  # and no CA in the data directory
    refused = invoke("release", "statements")
    assert refused.exit_code == 3
    assert "does not verify against the system's trusted CAs" in refused.output
    assert "--ca" in refused.output and "LAMPLIGHTER_CA" in refused.output
    assert "Traceback" not in refused.output

    other = TlsFiles(tmp_path / "other-ca")
    init_tls(other)
    wrong = invoke("rollout", "releases", "--ca", str(other.ca_cert))
    assert wrong.exit_code == 3
    assert f"the CA in {other.ca_cert}" in wrong.output

    missing = invoke("rollout", "releases", "--ca", str(tmp_path / "nowhere.pem"))
    assert missing.exit_code == 2 and "no CA certificate at" in missing.output
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = invoke("rollout", "releases", "--ca", str(tmp_path / "junk.pem"))
    assert junk.exit_code == 2 and "cannot read the CA certificate" in junk.output

    assert tls_server.ca_der is not None
    (tmp_path / "ca.der").write_bytes(tls_server.ca_der)  # the CA as a node pins it
    der = invoke("rollout", "releases", "--ca", str(tmp_path / "ca.der"))
    assert der.exit_code == 0, der.output

    # on the server's host, the CLI finds the CA in the data directory by itself
    monkeypatch.setenv("LAMPLIGHTER_DATA_DIR", str(tls_server.tls.directory.parent))
    found = invoke("rollout", "releases")
    assert found.exit_code == 0, found.output
