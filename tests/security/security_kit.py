"""A throwaway PKI (cluster CA, broker certificate, department client certificates) and a one-shot TLS server.

The embedded broker cannot prove authentication (DESIGN.md), so TLS settings are proven against a real TLS
endpoint instead: Python's ssl module, requiring client certificates exactly as a Kafka broker with
``ssl.client.auth=required`` does.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_PASSPHRASE = "key-passphrase-Q7"


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with KEY_PASSPHRASE


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None, **kw: bool
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if kw.get("server") else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if kw.get("server"):
            import ipaddress

            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    path: Path,
    cert: x509.Certificate | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    passphrase: str | None = None,
) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
        )
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return path


def make_pki(directory: Path, client_cn: str = "housing_fund") -> Pki:
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("ca", "other", "server", "client")}
    ca = _cert("onceonly test cluster CA", keys["ca"], None)
    other = _cert("some other CA", keys["other"], None)
    issuer = ("onceonly test cluster CA", keys["ca"])
    server = _cert("localhost", keys["server"], issuer, server=True)
    client = _cert(client_cn, keys["client"], issuer)
    return Pki(
        ca=_write(directory / "ca.crt", ca),
        other_ca=_write(directory / "other-ca.crt", other),
        server_cert=_write(directory / "server.crt", server),
        server_key=_write(directory / "server.key", key=keys["server"]),
        client_cert=_write(directory / "client.crt", client),
        client_key=_write(directory / "client.key", key=keys["client"], passphrase=KEY_PASSPHRASE),
    )


@dataclass
class TlsServer:
    """Accepts TLS connections that present a client certificate signed by the CA; records who connected."""

    pki: Pki
    peers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    handshake: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        self.ctx.load_verify_locations(self.pki.ca)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    cert = tls.getpeercert() or {}
                    subject = cast(tuple[tuple[tuple[str, str], ...], ...], cert.get("subject", ()))
                    names = [attr for rdn in subject for attr in rdn]
                    self.peers.append(next(str(v) for k, v in names if k == "commonName"))
                    self.handshake.set()
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as e:
                self.errors.append(str(e))
                self.handshake.set()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=5)
