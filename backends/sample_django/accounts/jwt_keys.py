"""The RSA key pair that signs this backend's JWTs: create it, or check it.

The private half stays with Django (simplejwt signs with it); the public half
is what the gateway's ``auth.jwt.public_key_file`` verifies with. This module
imports nothing from Django on purpose: the test suite creates a throwaway
pair with it before Django's settings are loaded.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["KeyPair", "KeyPairError", "Outcome", "ensure_key_pair", "key_pair_problem"]

KEY_BITS = 2048
PUBLIC_EXPONENT = 65537


class KeyPairError(Exception):
    """The files on disk cannot be made into a usable key pair without losing one."""


class Outcome(enum.Enum):
    CREATED = "created"
    PUBLIC_DERIVED = "public key derived from the existing private key"
    KEPT = "kept"


@dataclass(frozen=True)
class KeyPair:
    """Where the two PEM files live."""

    private: Path
    public: Path

    @classmethod
    def in_directory(cls, directory: Path) -> KeyPair:
        return cls(private=directory / "jwt.key", public=directory / "jwt.pub")


def ensure_key_pair(pair: KeyPair, *, bits: int = KEY_BITS) -> Outcome:
    """Create whatever is missing of ``pair``; never overwrite a key.

    A lone public key is an error rather than a reason to mint a new private
    key: the gateway may already trust that public key, and a new pair would
    silently make every token fail verification.
    """
    if pair.private.exists():
        private_key = _load_private(pair.private)
        if pair.public.exists():
            if not _same_key(private_key, _load_public(pair.public)):
                raise KeyPairError(
                    f"{pair.public} is not the public half of {pair.private}; "
                    "delete both to start over"
                )
            return Outcome.KEPT
        _write_public(pair.public, private_key)
        return Outcome.PUBLIC_DERIVED
    if pair.public.exists():
        raise KeyPairError(
            f"{pair.public} exists but its private key {pair.private} does not; "
            "restore the private key, or delete the public key to create a new pair"
        )
    private_key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=bits)
    _write_private(pair.private, private_key)
    _write_public(pair.public, private_key)
    return Outcome.CREATED


def key_pair_problem(pair: KeyPair) -> str | None:
    """Why ``pair`` cannot sign and verify tokens, or None when it can."""
    try:
        private_key = _load_private(pair.private)
        public_key = _load_public(pair.public)
    except FileNotFoundError as exc:
        return f"JWT key file not found: {exc.filename}"
    except (ValueError, TypeError, KeyPairError) as exc:
        return f"JWT key pair unreadable: {exc}"
    if not _same_key(private_key, public_key):
        return f"{pair.public} is not the public half of {pair.private}"
    return None


def _load_private(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyPairError(f"{path} is not an RSA private key (RS256 needs one)")
    return key


def _load_public(path: Path) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyPairError(f"{path} is not an RSA public key (RS256 needs one)")
    return key


def _same_key(private_key: rsa.RSAPrivateKey, public_key: rsa.RSAPublicKey) -> bool:
    return private_key.public_key().public_numbers() == public_key.public_numbers()


def _write_private(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_EXCL: two concurrent runs cannot both write a private key; 0600 from
    # the first byte, not chmod-ed after the key was briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)


def _write_public(path: Path, key: rsa.RSAPrivateKey) -> None:
    pem = key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
