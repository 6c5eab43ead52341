"""Authority signatures on change events: a verified record names its authority; anything else says why not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onceonly.errors import ConfigError
from onceonly.signing import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    Reason,
    Signer,
    Verifier,
    authorities_from_departments,
    generate_key,
    load_private_key,
    load_public_key,
    private_key_pem,
    signed_bytes,
    write_keypair,
)

KEY, VALUE = b"110105199001011234", b"\x00\x00\x00\x00\x07avro-bytes-of-the-change"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """public_security (authority for person) and tax (authority for nothing), laid out as a deployment keeps them."""
    directory = tmp_path_factory.mktemp("keys")
    write_keypair(directory, "public_security")
    write_keypair(directory, "tax")
    return directory


@pytest.fixture(scope="module")
def verifier(keys: Path) -> Verifier:
    return Verifier.from_directory(keys, authorities_from_departments())


def signer(keys: Path, department: str) -> Signer:
    return Signer(department, load_private_key(keys / f"{department}.key.pem"))


def test_a_record_signed_by_its_authority_verifies(keys: Path, verifier: Verifier) -> None:
    psb = signer(keys, "public_security")
    headers = psb.headers(KEY, VALUE)
    assert [h for h, _ in headers] == [SIGNATURE_HEADER, SIGNER_HEADER]
    verdict = verifier.verify(KEY, VALUE, headers, "person")
    assert verdict.ok and verdict.reason is None
    assert verdict.signer == psb.key_id and psb.key_id.startswith("public_security:")


def test_headers_as_a_mapping_and_as_text_verify_too(keys: Path, verifier: Verifier) -> None:
    headers = {k: v.decode() for k, v in signer(keys, "public_security").headers(KEY, VALUE)}
    assert verifier.verify(KEY, VALUE, headers, "household").ok  # Faust hands headers over as a mapping


@pytest.mark.parametrize(
    ("key", "value"),
    [(KEY, VALUE + b"!"), (KEY, VALUE[:-1]), (b"110105199001019999", VALUE), (None, VALUE), (KEY, None)],
)
def test_a_tampered_record_is_a_bad_signature(keys: Path, verifier: Verifier, key: bytes, value: bytes) -> None:
    headers = signer(keys, "public_security").headers(KEY, VALUE)
    verdict = verifier.verify(key, value, headers, "person")
    assert (verdict.ok, verdict.reason) == (False, Reason.BAD_SIGNATURE)


def test_moving_bytes_between_key_and_value_breaks_the_signature(keys: Path, verifier: Verifier) -> None:
    headers = signer(keys, "public_security").headers(b"ab", b"cd")
    assert verifier.verify(b"a", b"bcd", headers, "person").reason is Reason.BAD_SIGNATURE
    assert signed_bytes(b"ab", b"cd") != signed_bytes(b"a", b"bcd")
    assert signed_bytes(None, b"") != signed_bytes(b"", b"")  # a missing key is not an empty key


def test_a_valid_signature_by_a_department_that_is_not_the_authority_is_refused(keys: Path, verifier: Verifier) -> None:
    verdict = verifier.verify(KEY, VALUE, signer(keys, "tax").headers(KEY, VALUE), "person")
    assert (verdict.ok, verdict.reason) == (False, Reason.NOT_AUTHORITY)
    assert "tax signed a person change; the authority is public_security" in str(verdict)


def test_an_unknown_key_is_an_unknown_signer(verifier: Verifier) -> None:
    rogue = Signer("public_security", generate_key())  # claims to be the authority, with a key nobody registered
    verdict = verifier.verify(KEY, VALUE, rogue.headers(KEY, VALUE), "person")
    assert (verdict.ok, verdict.reason) == (False, Reason.UNKNOWN_SIGNER)


@pytest.mark.parametrize(
    "headers",
    [None, [], [("onceonly.signer", b"public_security:0011")], [("onceonly.signature", b"c2ln")]],
)
def test_a_missing_signature_or_signer_is_missing(verifier: Verifier, headers: list[tuple[str, bytes]] | None) -> None:
    assert verifier.verify(KEY, VALUE, headers, "person").reason is Reason.MISSING


def test_a_garbled_signature_header_is_malformed(keys: Path, verifier: Verifier) -> None:
    headers = [(SIGNATURE_HEADER, b"not base64 !"), (SIGNER_HEADER, signer(keys, "public_security").key_id.encode())]
    assert verifier.verify(KEY, VALUE, headers, "person").reason is Reason.MALFORMED


def test_a_rotated_key_still_verifies_old_and_new_records(tmp_path: Path) -> None:
    old = write_keypair(tmp_path / "a", "health")
    new = write_keypair(tmp_path / "b", "health")
    verifier = Verifier({"health": [old.private_key.public_key(), new.private_key.public_key()]}, {"death": "health"})
    assert verifier.verify(KEY, VALUE, old.headers(KEY, VALUE), "death").ok
    assert verifier.verify(KEY, VALUE, new.headers(KEY, VALUE), "death").ok
    assert len(verifier.key_ids) == 2


def test_keys_round_trip_through_pem_files_and_stay_private(tmp_path: Path) -> None:
    s = write_keypair(tmp_path, "hrss", passphrase=b"pass-phrase")
    private = tmp_path / "hrss.key.pem"
    assert os.stat(private).st_mode & 0o077 == 0
    assert b"ENCRYPTED" in private.read_bytes()
    loaded = load_private_key(private, b"pass-phrase")
    public = load_public_key(next((tmp_path / "hrss").glob("*.pem")))
    assert Signer("hrss", loaded).key_id == s.key_id
    assert Verifier({"hrss": [public]}, {"pension": "hrss"}).verify(KEY, VALUE, s.headers(KEY, VALUE), "pension").ok
    assert repr(s) == "Signer(department='hrss')"  # the private key never prints


def test_key_loading_errors_name_the_file(tmp_path: Path) -> None:
    write_keypair(tmp_path, "hrss", passphrase=b"right")
    with pytest.raises(ConfigError, match=r"hrss\.key\.pem: cannot load the signing key"):
        load_private_key(tmp_path / "hrss.key.pem", b"wrong")
    with pytest.raises(ConfigError, match="signing key not found"):
        load_private_key(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match="exists already"):
        write_keypair(tmp_path, "hrss")
    (tmp_path / "garbled.pem").write_bytes(private_key_pem(generate_key()).replace(b"PRIVATE", b"PUBLIC"))
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_public_key(tmp_path / "garbled.pem")


def test_settings_choose_the_signer_and_the_verifiers(keys: Path, tmp_path: Path) -> None:
    from onceonly.settings import Settings
    from onceonly.signing import DISTRIBUTOR, authority_verifier, inbox_verifier, signer_for

    off = Settings()
    assert signer_for(off, "public_security") is None and authority_verifier(off) is None
    assert inbox_verifier(off) is None
    with pytest.raises(ConfigError, match="ONCEONLY_SIGNING_KEYS names no key folder"):
        signer_for(Settings(signatures="require"), "public_security")
    on = Settings(signatures="require", signing_keys=keys)
    with pytest.raises(ConfigError, match="no public key of the distributor"):
        inbox_verifier(on)
    signer = signer_for(on, "public_security")
    assert signer is not None
    headers = signer.headers(KEY, VALUE)
    checker = authority_verifier(on)
    assert checker is not None and checker.verify(KEY, VALUE, headers, "person").ok

    distributor_keys = tmp_path / "k"
    write_keypair(distributor_keys, DISTRIBUTOR)
    write_keypair(distributor_keys, "public_security")
    inbox = inbox_verifier(Settings(signatures="require", signing_keys=distributor_keys))
    assert inbox is not None
    by_distributor = signer_for(Settings(signatures="require", signing_keys=distributor_keys), DISTRIBUTOR)
    assert by_distributor is not None
    assert inbox.verify(KEY, VALUE, by_distributor.headers(KEY, VALUE), "marriage").ok  # any entity type
    by_authority = signer_for(Settings(signatures="require", signing_keys=distributor_keys), "public_security")
    assert by_authority is not None
    verdict = inbox.verify(KEY, VALUE, by_authority.headers(KEY, VALUE), "person")
    assert verdict.reason is Reason.NOT_AUTHORITY  # in an inbox only the distributor's signature counts


def test_keys_new_writes_a_pair_and_refuses_to_overwrite(tmp_path: Path) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "onceonly", "keys", "new", *args], capture_output=True, text=True)

    first = run("health", "--dir", str(tmp_path))
    assert first.returncode == 0 and "health: key health:" in first.stdout, first.stderr
    assert (tmp_path / "health.key.pem").stat().st_mode & 0o777 == 0o600
    assert len(list((tmp_path / "health").glob("*.pem"))) == 1
    again = run("health", "--dir", str(tmp_path))
    assert again.returncode != 0 and "a signing key exists already" in again.stderr and "Traceback" not in again.stderr
    unknown = run("nobody", "--dir", str(tmp_path))
    assert unknown.returncode != 0 and "unknown department 'nobody'" in unknown.stderr
