"""Throwaway JWT key material for tests: generated in memory once per test process,
written to each test's tmp_path when a file is needed, never committed.

``key_pair("rsa")`` / ``"rsa-b"`` (a second RSA key, for rotation) / ``"ec256"`` /
``"ec384"`` / ``"ed25519"`` / ``"rsa1024"`` (too weak, must be refused).
"""

from __future__ import annotations

import base64
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

__all__ = ["KeyPair", "key_pair", "HS_SECRET", "base_claims", "jwks_document", "hs_token", "forge", "write"]

HS_SECRET = "test-only-hmac-secret-0123456789-abcdefghij"  # 43 bytes: enough for HS256


@dataclass(frozen=True)
class KeyPair:
    name: str
    algorithm: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def public_pem(self) -> bytes:
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def jwk(self, kid: str | None = None, **extra: Any) -> dict[str, Any]:
        codec = {"RS": RSAAlgorithm, "PS": RSAAlgorithm, "ES": ECAlgorithm, "Ed": OKPAlgorithm}[self.algorithm[:2]]
        data: dict[str, Any] = codec.to_jwk(self.public, as_dict=True)
        if kid is not None:
            data["kid"] = kid
        data.update(extra)
        return data

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, algorithm: str | None = None,
             headers: dict[str, Any] | None = None) -> str:
        all_headers = dict(headers or {})
        if kid is not None:
            all_headers["kid"] = kid
        return jwt.encode(claims, self.private, algorithm=algorithm or self.algorithm, headers=all_headers or None)


@functools.cache
def key_pair(name: str) -> KeyPair:
    if name in ("rsa", "rsa-b"):
        return KeyPair(name, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if name == "rsa1024":
        return KeyPair(name, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024))
    if name == "ec256":
        return KeyPair(name, "ES256", ec.generate_private_key(ec.SECP256R1()))
    if name == "ec384":
        return KeyPair(name, "ES384", ec.generate_private_key(ec.SECP384R1()))
    if name == "ed25519":
        return KeyPair(name, "EdDSA", ed25519.Ed25519PrivateKey.generate())
    raise KeyError(name)


def base_claims(**overrides: Any) -> dict[str, Any]:
    """What the sample backend's access tokens carry, valid for 15 minutes from now."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "token_type": "access",
        "user_id": 42,
        "groups": ["Customer"],
        "iss": "little-lemon",
        "iat": now,
        "exp": now + 900,
        "jti": "a1b2c3",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def hs_token(claims: dict[str, Any], *, secret: str = HS_SECRET, algorithm: str = "HS256",
             headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def forge(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A JWS built by hand, for tokens PyJWT refuses to produce (an HMAC signed with a
    PEM public key, a non-string kid): ``key`` goes straight to the algorithm's sign()."""
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(claims).encode())
    signature = get_default_algorithms()[header["alg"]].sign(signing_input, key)
    return (signing_input + b"." + b64(signature)).decode()


def jwks_document(*keys: dict[str, Any]) -> dict[str, Any]:
    return {"keys": list(keys)}


def write(path: Path, data: bytes | str | dict[str, Any]) -> str:
    """Write key material (a dict is written as JSON); returns the path as a string."""
    if isinstance(data, dict):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return str(path)


def jwt_section(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """An ``auth.jwt`` section shaped like the demo's (simplejwt RS256 tokens)."""
    section = {
        "algorithms": ["RS256"],
        "public_key_file": write(tmp_path / "jwt.pub", key_pair("rsa").public_pem()),
        "issuer": "little-lemon",
        "required_claims": {"token_type": "access"},
        "subject_claim": "user_id",
        "forward_claims": {"user_id": "X-User-Id"},
    }
    section.update(extra)
    return section
