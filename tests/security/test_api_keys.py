"""API keys for the HTTP gateway are stored as salted scrypt hashes and checked in constant time."""

from __future__ import annotations

import pytest

from onceonly.logs import redact
from onceonly.signing import api_key_id, generate_api_key, hash_api_key, verify_api_key


def test_a_key_verifies_against_its_hash_and_nothing_else() -> None:
    key = generate_api_key()
    stored = hash_api_key(key)
    assert verify_api_key(key, stored)
    assert not verify_api_key(key + "x", stored)
    assert not verify_api_key(generate_api_key(), stored)


def test_the_hash_is_salted_and_does_not_contain_the_key() -> None:
    key = generate_api_key()
    first, second = hash_api_key(key), hash_api_key(key)
    assert first != second and verify_api_key(key, second)
    assert key not in first and key.split("_")[-1] not in first
    assert first.startswith("scrypt$16384$8$1$")


@pytest.mark.parametrize(
    "stored", ["", "plain-text-key", "scrypt$1$2$3", "bcrypt$1$1$1$AAAA$AAAA", "scrypt$x$8$1$AA$AA"]
)
def test_a_malformed_stored_hash_never_matches(stored: str) -> None:
    assert not verify_api_key("anything", stored)


def test_the_key_id_finds_the_stored_hash_without_revealing_the_secret() -> None:
    key = generate_api_key()
    key_id = api_key_id(key)
    assert key_id is not None and len(key_id) == 12 and key.startswith(f"ook_{key_id}_")
    assert api_key_id("some-other-key") is None


def test_keys_are_redacted_wherever_they_appear_in_a_log_line() -> None:
    key = generate_api_key()
    line = redact(f"POST /v1/changes by {key} rejected")
    assert key not in line and f"ook_{api_key_id(key)}_***" in line
