"""The fleet's TLS files: a private CA and a server certificate it signs (EC P-256), made once.

Layout under a directory (by default DATA_DIR/tls):
    ca.pem       the CA certificate: pinned on every node (as DER) and trusted by the tools
    ca.key       the CA's private key (0600): only `init-tls` reads it, to issue a new server cert
    server.pem   the server certificate (with the CA appended), what uvicorn serves
    server.key   its private key (0600)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
CA_DAYS = 3650
SERVER_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    """Where a fleet's TLS files are."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    def exists(self) -> bool:
        """True when a server certificate and key, and the CA to pin, are all there."""
        return self.ca_cert.exists() and self.server_cert.exists() and self.server_key.exists()

    def ca_der(self) -> bytes:
        """The CA certificate in DER, as a node pins it (MicroPython's ssl takes DER cadata)."""
        return ca_der_of(self.ca_cert.read_bytes())


def default_tls_files() -> TlsFiles:
    """The TLS files of the configured data directory (LAMPLIGHTER_TLS_DIR overrides)."""
    from fleet.core.settings import get_settings

    settings = get_settings()
    return TlsFiles(settings.tls_dir or settings.data_dir / "tls")


def ca_der_of(pem_or_der: bytes) -> bytes:
    """A CA certificate in DER, from PEM or DER; ValueError when it is neither."""
    try:
        cert = (x509.load_pem_x509_certificate(pem_or_der) if b"-----BEGIN" in pem_or_der
                else x509.load_der_x509_certificate(pem_or_der))
    except ValueError as exc:
        raise ValueError(f"not an X.509 certificate (PEM or DER): {exc}") from None
    return cert.public_bytes(serialization.Encoding.DER)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: tuple[str, ...] | list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_ca(name: str = "Lamplighter fleet CA") -> tuple[x509.Certificate,
                                                         ec.EllipticCurvePrivateKey]:
    """A new self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_server_cert(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                     hosts: tuple[str, ...] | list[str]) -> tuple[x509.Certificate,
                                                                 ec.EllipticCurvePrivateKey]:
    """A server certificate for `hosts` (DNS names or IP addresses), signed by the CA."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def init_tls(files: TlsFiles, hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
             *, new_ca: bool = False) -> list[Path]:
    """Create the CA (unless one is there and `new_ca` is false) and a server certificate
    for `hosts`, signed by it. Returns the files written."""
    files.directory.mkdir(parents=True, exist_ok=True)
    written = []
    if new_ca or not (files.ca_cert.exists() and files.ca_key.exists()):
        ca_cert, ca_key = make_ca()
        _write_private(files.ca_key, _key_pem(ca_key))
        _write_public(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
        written += [files.ca_cert, files.ca_key]
    else:
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{files.ca_key} is not an EC private key")
        ca_key = loaded
    cert, key = make_server_cert(ca_cert, ca_key, hosts)
    _write_private(files.server_key, _key_pem(key))
    _write_public(files.server_cert, cert.public_bytes(serialization.Encoding.PEM)
                  + ca_cert.public_bytes(serialization.Encoding.PEM))
    written += [files.server_cert, files.server_key]
    return written


def import_tls(files: TlsFiles, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> list[Path]:
    """Take the operator's own server certificate, key and the CA that signed it (checked:
    the key matches the certificate, and the CA's key signed it)."""
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, None)
    ca = x509.load_pem_x509_certificate(ca_pem) if b"-----BEGIN" in ca_pem \
        else x509.load_der_x509_certificate(ca_pem)
    if key.public_key().public_bytes(serialization.Encoding.DER,
                                     serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo):
        raise ValueError("the private key does not belong to the certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no base to name
        raise ValueError(f"the certificate was not issued by that CA: {exc}") from None
    files.directory.mkdir(parents=True, exist_ok=True)
    _write_private(files.server_key, key_pem)
    _write_public(files.server_cert, cert_pem)
    _write_public(files.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
    return [files.server_cert, files.server_key, files.ca_cert]
