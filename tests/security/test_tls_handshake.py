"""The rendered TLS settings complete a real mutual-TLS handshake, and fail it when they should.

The server requires a client certificate signed by the cluster CA, as a broker with ssl.client.auth=required does.
Python clients (kafka-python, aiokafka, Faust) use ``ssl_context``; librdkafka uses its own properties, so it is
pointed at the same server and must present the department's certificate too.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

import faust
import pytest
from confluent_kafka import Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from security_kit import KEY_PASSPHRASE, Pki, TlsServer

from onceonly.errors import ConfigError
from onceonly.kafka import confluent_producer_config, faust_app_settings, ssl_context
from onceonly.settings import Settings


def settings(pki: Pki, port: int = 9093, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "bootstrap_servers": f"localhost:{port}",
        "security_protocol": "SSL",
        "ssl_cafile": pki.ca,
        "ssl_certfile": pki.client_cert,
        "ssl_keyfile": pki.client_key,
        "ssl_key_password": KEY_PASSPHRASE,
    }
    return Settings(**{**base, **kw})


def handshake(ctx: ssl.SSLContext, port: int) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.recv(2)


def test_python_clients_present_the_department_certificate(pki: Pki, tls_server: TlsServer) -> None:
    ctx = ssl_context(settings(pki))
    assert ctx is not None
    assert handshake(ctx, tls_server.port) == b"ok"
    assert tls_server.peers == ["housing_fund"]


def test_faust_uses_the_same_working_context(pki: Pki, tls_server: TlsServer) -> None:
    app = faust.App("tls-test", **faust_app_settings(settings(pki)))
    ctx = credentials_to_aiokafka_auth(app.conf.broker_credentials)["ssl_context"]
    assert handshake(ctx, tls_server.port) == b"ok"
    assert tls_server.peers == ["housing_fund"]


def test_without_a_client_certificate_the_broker_refuses(pki: Pki, tls_server: TlsServer) -> None:
    ctx = ssl_context(settings(pki, ssl_certfile=None, ssl_keyfile=None, ssl_key_password=None))
    assert ctx is not None
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(ctx, tls_server.port)
        # TLS 1.3 reports the server's refusal on the first read, not in the handshake
    assert tls_server.peers == []


def test_a_broker_signed_by_another_ca_is_not_trusted(pki: Pki, tls_server: TlsServer) -> None:
    ctx = ssl_context(settings(pki, ssl_cafile=pki.other_ca))
    assert ctx is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ctx, tls_server.port)


def test_a_wrong_key_passphrase_is_a_clear_error_without_the_passphrase(pki: Pki) -> None:
    with pytest.raises(ConfigError) as err:
        ssl_context(settings(pki, ssl_key_password="not-the-passphrase"))
    assert "cannot load the TLS CA, certificate or key" in str(err.value)
    assert "not-the-passphrase" not in str(err.value) and KEY_PASSPHRASE not in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is not None  # suppressed, not chained


def test_librdkafka_presents_the_department_certificate(pki: Pki, tls_server: TlsServer) -> None:
    conf = confluent_producer_config(
        settings(pki, port=tls_server.port), **{"log_level": 0, "broker.address.family": "v4"}
    )
    producer = Producer(conf)
    deadline = time.monotonic() + 15
    while not tls_server.peers and time.monotonic() < deadline:
        producer.poll(0.1)
    assert tls_server.peers[:1] == ["housing_fund"], tls_server.errors
