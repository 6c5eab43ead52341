"""Non-repudiation for change events, and API keys stored hashed.

An authority signs each change it publishes with its own Ed25519 key (X-Road's idea, for Kafka records): a holder
can then prove which department recorded a fact, and a record injected by anyone else - a leaked producer
credential, a mis-set ACL - is dead-lettered instead of applied. The signature covers the record's key and value
bytes only, not the topic, so a record keeps its proof when it is replayed or mirrored unchanged; it does not
survive a projection (a holder receiving a subset of fields must trust the distributor, which verifies).

Signed bytes: ``b"onceonly-sig-v1\\0"``, then key and value, each as a 1-byte presence flag, an 8-byte big-endian
length and the bytes, so no boundary between key and value can be shifted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onceonly.errors import ConfigError
from onceonly.settings import Settings

SIGNATURE_HEADER = "onceonly.signature"
SIGNER_HEADER = "onceonly.signer"
_DOMAIN = b"onceonly-sig-v1\0"

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


def signed_bytes(key: bytes | None, value: bytes | None) -> bytes:
    """The exact bytes a signature covers (see the module docstring)."""
    out = bytearray(_DOMAIN)
    for part in (key, value):
        if part is None:
            out += b"\0" + (0).to_bytes(8, "big")
        else:
            out += b"\1" + len(part).to_bytes(8, "big") + part
    return bytes(out)


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """16 hex digits of SHA-256 over the raw public key: short enough for a header, unique in practice."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def key_id(department: str, public_key: Ed25519PublicKey) -> str:
    """``<department>:<fingerprint>``: names the department, and which of its keys (keys rotate)."""
    return f"{department}:{key_fingerprint(public_key)}"


@dataclass(frozen=True)
class Signer:
    """An authority's signing key; ``headers(key, value)`` gives the two headers to add to the record."""

    department: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @property
    def key_id(self) -> str:
        return key_id(self.department, self.private_key.public_key())

    def sign(self, key: bytes | None, value: bytes | None) -> bytes:
        return self.private_key.sign(signed_bytes(key, value))

    def headers(self, key: bytes | None, value: bytes | None) -> list[tuple[str, bytes]]:
        signature = base64.b64encode(self.sign(key, value))
        return [(SIGNATURE_HEADER, signature), (SIGNER_HEADER, self.key_id.encode())]


class SignatureRefused(Exception):
    """A record whose signature does not verify: dead-lettered with the verdict, never applied or delivered."""


class Reason(StrEnum):
    """Why a record failed verification; the text goes into the dead letter."""

    MISSING = "missing signature"
    MALFORMED = "malformed signature header"
    UNKNOWN_SIGNER = "unknown signer"
    BAD_SIGNATURE = "bad signature"
    NOT_AUTHORITY = "signer is not the authority of the entity type"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: Reason | None = None
    signer: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"signed by {self.signer}"
        return f"{self.reason}: {self.detail}" if self.detail else str(self.reason)


def _header(headers: Headers, name: str) -> bytes | None:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: bytes | None = None
    for k, v in items:
        if k == name:
            found = v.encode() if isinstance(v, str) else v  # the last one wins, as in Kafka Streams
    return found


class Verifier:
    """The public keys of every department, and who is the authority of which entity type."""

    def __init__(
        self,
        keys: Mapping[str, Iterable[Ed25519PublicKey]],
        authorities: Mapping[str, str],
        *,
        only_signer: str | None = None,
    ) -> None:
        """``only_signer``: every record must be signed by that department whatever its entity type (inboxes)."""
        self._keys: dict[str, Ed25519PublicKey] = {}
        for department, public_keys in keys.items():
            for pk in public_keys:
                self._keys[key_id(department, pk)] = pk
        self.authorities = dict(authorities)
        self.only_signer = only_signer

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, key: bytes | None, value: bytes | None, headers: Headers, entity_type: str) -> Verdict:
        """Check the record's signature and that its signer is the authority of ``entity_type``."""
        raw_sig, raw_signer = _header(headers, SIGNATURE_HEADER), _header(headers, SIGNER_HEADER)
        if not raw_sig or not raw_signer:
            return Verdict(False, Reason.MISSING)
        try:
            signer = raw_signer.decode()
            signature = base64.b64decode(raw_sig, validate=True)
        except (UnicodeDecodeError, ValueError):
            return Verdict(False, Reason.MALFORMED)
        public_key = self._keys.get(signer)
        if public_key is None:
            return Verdict(False, Reason.UNKNOWN_SIGNER, signer, f"no public key {signer!r}")
        try:
            public_key.verify(signature, signed_bytes(key, value))
        except InvalidSignature:
            return Verdict(False, Reason.BAD_SIGNATURE, signer, "the record was changed after signing, or forged")
        department = signer.split(":", 1)[0]
        authority = self.only_signer or self.authorities.get(entity_type)
        if authority != department:
            detail = f"{department} signed a {entity_type} change; the authority is {authority or 'nobody'}"
            return Verdict(False, Reason.NOT_AUTHORITY, signer, detail)
        return Verdict(True, None, signer)

    @classmethod
    def from_directory(
        cls, directory: Path, authorities: Mapping[str, str], *, only_signer: str | None = None
    ) -> Verifier:
        """Public keys laid out as ``<directory>/<department>/*.pem`` (several per department while keys rotate)."""
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no such key directory")
        keys: dict[str, list[Ed25519PublicKey]] = {}
        for pem in sorted(directory.glob("*/*.pem")):
            keys.setdefault(pem.parent.name, []).append(load_public_key(pem))
        return cls(keys, authorities, only_signer=only_signer)


def authorities_from_departments() -> dict[str, str]:
    """Entity type -> authority department, from ``schemas/departments.yaml``."""
    from onceonly.catalog import load_departments

    return {e: d.code for d in load_departments().departments for e in d.authority_for}


# --- keys ----------------------------------------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given (keep it encrypted at rest)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; a wrong passphrase or another key type is a ConfigError naming the file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: signing key not found") from e
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path}: cannot load the signing key (wrong passphrase or not a PEM key)") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: public key not found") from e
    except ValueError as e:
        raise ConfigError(f"{path}: not a PEM public key") from e
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return key


def write_keypair(directory: Path, department: str, passphrase: bytes | None = None) -> Signer:
    """Write ``<dept>.key.pem`` (mode 0600) and ``<dept>/<fingerprint>.pem`` (public, for Verifier.from_directory)."""
    key = generate_key()
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / f"{department}.key.pem"
    if private.exists():
        raise ConfigError(f"{private}: a signing key exists already; move it away to rotate")
    private.touch(mode=0o600)
    private.write_bytes(private_key_pem(key, passphrase))
    public_dir = directory / department
    public_dir.mkdir(exist_ok=True)
    (public_dir / f"{key_fingerprint(key.public_key())}.pem").write_bytes(public_key_pem(key.public_key()))
    return Signer(department, key)


# --- API keys (the HTTP gateway) -----------------------------------------------------------------------------------

API_KEY_PREFIX = "ook_"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def generate_api_key() -> str:
    """``ook_<12 hex id>_<secret>``: the id lets the gateway find the stored hash without trying them all."""
    return f"{API_KEY_PREFIX}{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def api_key_id(api_key: str) -> str | None:
    """The public id part of a key in the platform's format, else None."""
    parts = api_key.split("_")
    if len(parts) >= 3 and api_key.startswith(API_KEY_PREFIX) and len(parts[1]) == 12:
        return parts[1]
    return None


def _scrypt(api_key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(api_key.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def hash_api_key(api_key: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (base64): what the gateway stores instead of the key."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(api_key, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_api_key(api_key: str, stored: str) -> bool:
    """Constant-time check of a presented key against its stored hash; a malformed hash never matches."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(api_key, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# --- from the settings ---------------------------------------------------------------------------------------------

DISTRIBUTOR = "distributor"
"""The signer of inbox records: holders receive projections, which no authority signed, so the distributor (which
verified the authority's signature) signs what it delivers."""


def _keys_dir(settings: Settings) -> Path:
    if settings.signing_keys is None:
        raise ConfigError("signatures are required but ONCEONLY_SIGNING_KEYS names no key folder")
    return settings.signing_keys


def signer_for(settings: Settings, department: str) -> Signer | None:
    """The signer a service of ``department`` uses, or None when signatures are off."""
    if settings.signatures == "off":
        return None
    passphrase = settings.signing_key_passphrase
    path = _keys_dir(settings) / f"{department}.key.pem"
    key = load_private_key(path, passphrase.get_secret_value().encode() if passphrase else None)
    return Signer(department, key)


def signed_as(
    signer: Signer | None, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """``headers`` with any earlier signature replaced by ``signer``'s over ``key`` and ``value`` (none: unchanged).

    Operators' tools write inbox records too (replays, re-drives): with signatures required they sign as the
    distributor, whose key they must hold, or holders dead-letter what they send.
    """
    kept = [(k, v) for k, v in headers if k not in (SIGNATURE_HEADER, SIGNER_HEADER)]
    return kept if signer is None else [*kept, *signer.headers(key, value)]


def authority_verifier(settings: Settings) -> Verifier | None:
    """What the distributor checks change records with: each entity type signed by its authority."""
    if settings.signatures == "off":
        return None
    return Verifier.from_directory(_keys_dir(settings), authorities_from_departments())


def inbox_verifier(settings: Settings) -> Verifier | None:
    """What a holder checks its inbox with: every record signed by the distributor."""
    if settings.signatures == "off":
        return None
    verifier = Verifier.from_directory(_keys_dir(settings), {}, only_signer=DISTRIBUTOR)
    if not any(k.startswith(f"{DISTRIBUTOR}:") for k in verifier.key_ids):
        raise ConfigError(f"{settings.signing_keys}: no public key of the {DISTRIBUTOR} ({DISTRIBUTOR}/*.pem)")
    return verifier
