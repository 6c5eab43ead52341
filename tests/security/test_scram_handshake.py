"""The rendered kafka-python settings authenticate with SCRAM against a verifier that knows only stored keys.

The verifier is RFC 5802's server side, holding what ``kafka-configs --add-config SCRAM-SHA-512=[password=...]``
stores on a broker (salt, iterations, StoredKey, ServerKey), never the password. kafka-python's own SCRAM
mechanism is driven from ``kafka_python_config``, so a wrong key name or a swapped field fails the exchange.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import pytest
from kafka.net.sasl import get_sasl_mechanism

from onceonly.kafka import kafka_python_config
from onceonly.settings import Settings

HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


@dataclass(frozen=True)
class StoredCredential:
    """What the broker keeps for a SCRAM user."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def create(cls, mechanism: str, password: str, iterations: int = 4096) -> StoredCredential:
        h = HASHES[mechanism]
        salt = secrets.token_bytes(16)
        salted = hashlib.pbkdf2_hmac(h().name, password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", h).digest()
        server_key = hmac.new(salted, b"Server Key", h).digest()
        return cls(mechanism, salt, iterations, h(client_key).digest(), server_key)


class ScramServer:
    """One SCRAM exchange, server side (RFC 5802 section 3)."""

    def __init__(self, users: dict[str, StoredCredential]) -> None:
        self.users = users
        self.authenticated: str | None = None

    def first(self, client_first: bytes) -> bytes:
        gs2, _, bare = client_first.decode().partition(",,")
        assert gs2 == "n", "no channel binding"
        attrs = dict(p.split("=", 1) for p in bare.split(","))
        self.user, self.cred = attrs["n"], self.users[attrs["n"]]
        nonce = attrs["r"] + secrets.token_hex(8)
        salt = base64.b64encode(self.cred.salt).decode()
        self.server_first = f"r={nonce},s={salt},i={self.cred.iterations}"
        self.client_first_bare, self.nonce = bare, nonce
        return self.server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        without_proof, _, proof = client_final.decode().rpartition(",p=")
        assert dict(p.split("=", 1) for p in without_proof.split(","))["r"] == self.nonce
        auth_message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        h = HASHES[self.cred.mechanism]
        signature = hmac.new(self.cred.stored_key, auth_message, h).digest()
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        if not hmac.compare_digest(h(client_key).digest(), self.cred.stored_key):
            raise PermissionError(f"authentication failed for {self.user}")
        self.authenticated = self.user
        return b"v=" + base64.b64encode(hmac.new(self.cred.server_key, auth_message, h).digest())


def exchange(settings: Settings, server: ScramServer) -> None:
    conf = kafka_python_config(settings)
    client = get_sasl_mechanism(conf["sasl_mechanism"])(**conf)
    client.receive(server.first(client.auth_bytes()))
    client.receive(server.final(client.auth_bytes()))
    assert client.is_done()


def settings(mechanism: str, password: str) -> Settings:
    return Settings(
        security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism, sasl_username="tax", sasl_password=password
    )


@pytest.mark.parametrize("mechanism", sorted(HASHES))
def test_the_right_password_authenticates(mechanism: str) -> None:
    server = ScramServer({"tax": StoredCredential.create(mechanism, "tax-secret-1")})
    exchange(settings(mechanism, "tax-secret-1"), server)
    assert server.authenticated == "tax"


@pytest.mark.parametrize("mechanism", sorted(HASHES))
def test_a_wrong_password_is_refused(mechanism: str) -> None:
    server = ScramServer({"tax": StoredCredential.create(mechanism, "tax-secret-1")})
    with pytest.raises(PermissionError):
        exchange(settings(mechanism, "not-it"), server)
    assert server.authenticated is None


def test_credentials_for_one_mechanism_do_not_work_for_the_other() -> None:
    server = ScramServer({"tax": StoredCredential.create("SCRAM-SHA-512", "tax-secret-1")})
    with pytest.raises((PermissionError, ValueError)):
        exchange(settings("SCRAM-SHA-256", "tax-secret-1"), server)
