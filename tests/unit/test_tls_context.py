"""The TLS context is built once per CA store and still verifies (issue 13: ~30 ms per sync).

A real TLS server on 127.0.0.1 with a certificate from a CA made here: a fetcher trusting
that CA downloads; one trusting another CA is refused; a CA bundle file replaced on disk is
loaded again (its identity is the key), so the cache never keeps trusting a removed CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tuf.api import exceptions as tuf_exceptions

from stella_trust._internal.memo import VerificationMemo
from stella_trust._internal.net.environment import tls_context
from stella_trust._internal.net.fetcher import HttpxFetcher


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, directory: Path
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, x509.Certificate]]:
    ca_key, ca = make_ca("test CA")
    cert, key = server_cert(ca_key, ca, tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/x", ca
    finally:
        server.shutdown()
        server.server_close()


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fetch(url: str, bundle: Path, memo: VerificationMemo | None = None) -> bytes:
    with HttpxFetcher(timeout=5, deadline=10, ca_bundle=bundle, memo=memo) as fetcher:
        return fetcher.download_bytes(url, 1024)


def test_one_context_per_ca_store_and_it_still_verifies(
    tls_server: tuple[str, x509.Certificate], tmp_path: Path
) -> None:
    url, ca = tls_server
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(pem(ca))
    memo = VerificationMemo()  # the agent's: one for the life of the process
    assert fetch(url, bundle, memo) == b"hello"
    assert fetch(url, bundle, memo) == b"hello"
    assert tls_context(bundle, memo) is tls_context(bundle, memo)  # built once for this store

    stranger = tmp_path / "other-ca.pem"
    stranger.write_bytes(pem(make_ca("another CA")[1]))
    with pytest.raises(tuf_exceptions.DownloadError):
        fetch(url, stranger, memo)

    before = tls_context(bundle, memo)
    bundle.write_bytes(pem(make_ca("replacement CA")[1]))  # the operator removed our CA
    assert tls_context(bundle, memo) is not before
    with pytest.raises(tuf_exceptions.DownloadError):
        fetch(url, bundle, memo)
