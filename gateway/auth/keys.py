"""Verification keys, and which algorithms each one may ever serve.

The rule that keeps key confusion out (RFC 8725 §2.1, §3.1): a key is bound to its
algorithm family when it is loaded, never when a token names an algorithm. An HMAC
secret only ever verifies HS*; an RSA public key only RS*/PS*; an EC key only the one
ES* that matches its curve; an Ed25519/Ed448 key only EdDSA. A JWK that names an
``alg`` is restricted to exactly that one. So a token that says ``HS256`` can never
get the RSA public key handed to HMAC as a "secret".

Keys come from four places (``auth.jwt``): ``secret`` (HS*), ``public_key_file``
(PEM public key or certificate), ``jwks_file`` and ``jwks_url`` (JSON Web Key Sets).
This module only parses; fetching lives in :mod:`gateway.auth.jwks`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError, PyJWKError

__all__ = [
    "ALGORITHMS",
    "HMAC_ALGORITHMS",
    "KeyMaterialError",
    "VerificationKey",
    "KeySet",
    "algorithms_for_key",
    "describe_key",
    "family_of",
    "load_public_key_pem",
    "load_private_key_pem",
    "parse_jwk",
    "parse_jwks",
    "looks_like_key_material",
    "MIN_RSA_BITS",
]

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_CURVE_ALGORITHM = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
ALGORITHMS = (*HMAC_ALGORITHMS, *RSA_ALGORITHMS, "ES256", "ES384", "ES512", "ES256K", "EdDSA")
"""Every algorithm the gateway can verify; ``none`` is deliberately absent."""

MIN_RSA_BITS = 2048
"""RSA keys below this are refused (NIST SP 800-131A; 1024-bit RSA is breakable)."""

_FAMILY = {
    **{a: "HMAC" for a in HMAC_ALGORITHMS},
    **{a: "RSA" for a in RSA_ALGORITHMS},
    **{a: "EC" for a in EC_CURVE_ALGORITHM.values()},
    "EdDSA": "OKP",
}


class KeyMaterialError(ValueError):
    """Key material that cannot be used; the message is written for operators."""


def family_of(algorithm: str) -> str:
    """``RS256`` -> ``RSA``; the family decides which keys an algorithm may use."""
    return _FAMILY[algorithm]


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """One key, the algorithms it may verify, and where it came from (for logs)."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any
    """A ``cryptography`` public key, or ``bytes`` for an HMAC secret."""
    source: str


def algorithms_for_key(key: Any) -> frozenset[str]:
    """The algorithms a public key may serve, from its type (and curve)."""
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset(RSA_ALGORITHMS)
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = EC_CURVE_ALGORITHM.get(key.curve.name)
        return frozenset({algorithm}) if algorithm else frozenset()
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return frozenset({"EdDSA"})
    return frozenset()


def describe_key(key: Any) -> str:
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return f"an EC key on {key.curve.name}"
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "an Ed25519 key"
    if isinstance(key, (ed448.Ed448PublicKey, ed448.Ed448PrivateKey)):
        return "an Ed448 key"
    return f"a {type(key).__name__}"


def _check_strength(key: Any) -> None:
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise KeyMaterialError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are required")
    if not algorithms_for_key(key):
        raise KeyMaterialError(f"{describe_key(key)} cannot verify any supported JWT algorithm")


def load_public_key_pem(data: bytes) -> Any:
    """A PEM public key (SPKI or PKCS#1) or X.509 certificate -> its public key.

    A private key is refused: the gateway only verifies, and a signing key lying
    in its config directory is one more copy to leak.
    """
    if b"PRIVATE KEY-----" in data:
        raise KeyMaterialError("this is a private key; give the gateway the public half only")
    key: Any
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"not a PEM public key or certificate ({exc})") from None
    _check_strength(key)
    return key


def load_private_key_pem(data: bytes) -> Any:
    """A PEM private key for minting test tokens (``gateway token --key-file``)."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"not an unencrypted PEM private key ({exc})") from None


def looks_like_key_material(secret: str) -> bool:
    """Whether an HMAC secret is really a public key or a JWK (key confusion bait)."""
    text = secret.strip()
    return (
        "-----BEGIN" in text
        or text.startswith(("{", "ssh-", "ecdsa-sha2-"))
        or '"kty"' in text
    )


_JWK_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}
_PRIVATE_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)


def parse_jwk(jwk: Any, *, source: str, allowed: Iterable[str]) -> VerificationKey | None:
    """One JWK -> a key restricted to the algorithms it may serve among ``allowed``.

    Returns ``None`` for a key that is fine but not for us (encryption keys, an
    algorithm the config does not list); raises :class:`KeyMaterialError` for a key
    that is broken or must never be used (symmetric ``oct`` keys, weak RSA).
    """
    if not isinstance(jwk, Mapping):
        raise KeyMaterialError("expected a JSON object for each key")
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyMaterialError("'kid' must be a string")
    label = f"key {kid!r}" if kid else "a key without kid"
    if kty == "oct":
        raise KeyMaterialError(
            f"{label} is a symmetric (oct) key; HMAC secrets are only taken from auth.jwt.secret"
        )
    parser = _JWK_PARSERS.get(kty) if isinstance(kty, str) else None
    if parser is None:
        raise KeyMaterialError(f"{label} has unsupported kty {kty!r} (expected RSA, EC or OKP)")
    use = jwk.get("use")
    ops = jwk.get("key_ops")
    if (use is not None and use != "sig") or (ops is not None and (not isinstance(ops, list) or "verify" not in ops)):
        return None
    try:
        key = parser(dict(jwk))
    except (InvalidKeyError, PyJWKError, ValueError, TypeError, KeyError) as exc:
        raise KeyMaterialError(f"{label} is not a valid {kty} key ({exc})") from None
    if isinstance(key, _PRIVATE_TYPES):
        key = key.public_key()  # a JWKS that carries private parts: use only the public half
    try:
        _check_strength(key)
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"{label}: {exc}") from None
    algorithms = algorithms_for_key(key)
    declared = jwk.get("alg")
    if declared is not None:
        if declared not in algorithms:
            raise KeyMaterialError(f"{label} declares alg {declared!r}, which does not fit {describe_key(key)}")
        algorithms = frozenset({declared})
    usable = algorithms & frozenset(allowed)
    if not usable:
        return None
    return VerificationKey(kid=kid, algorithms=usable, key=key, source=source)


def parse_jwks(data: bytes | str, *, source: str, allowed: Iterable[str]) -> tuple[list[VerificationKey], list[str]]:
    """A JWKS document -> (usable keys, problems with the others)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise KeyMaterialError(f"not JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyMaterialError('expected a JWKS: a JSON object with a "keys" list')
    allowed = frozenset(allowed)
    keys: list[VerificationKey] = []
    problems: list[str] = []
    for index, jwk in enumerate(document["keys"]):
        try:
            key = parse_jwk(jwk, source=source, allowed=allowed)
        except KeyMaterialError as exc:
            problems.append(f"keys[{index}]: {exc}")
            continue
        if key is not None:
            keys.append(key)
    return keys, problems


class KeySet:
    """An immutable lookup from (algorithm, kid) to the keys that may verify it.

    Keys without a ``kid`` (the HMAC secret, a PEM file) are candidates for every
    token of their algorithms whatever ``kid`` it names: a PEM key has no id to
    compare. Keys with a ``kid`` only match tokens naming that ``kid`` -- or, for a
    token with no ``kid`` at all, every key of its algorithm is a candidate.
    """

    __slots__ = ("keys", "_by_alg", "_by_alg_kid", "_kidless")

    def __init__(self, keys: Sequence[VerificationKey] = ()) -> None:
        self.keys = tuple(keys)
        by_alg: dict[str, list[VerificationKey]] = {}
        by_alg_kid: dict[tuple[str, str], list[VerificationKey]] = {}
        kidless: dict[str, list[VerificationKey]] = {}
        for key in self.keys:
            for algorithm in key.algorithms:
                by_alg.setdefault(algorithm, []).append(key)
                if key.kid is None:
                    kidless.setdefault(algorithm, []).append(key)
                else:
                    by_alg_kid.setdefault((algorithm, key.kid), []).append(key)
        self._by_alg = {a: tuple(k) for a, k in by_alg.items()}
        self._by_alg_kid = {a: tuple(k) for a, k in by_alg_kid.items()}
        self._kidless = {a: tuple(k) for a, k in kidless.items()}

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, algorithm: str, kid: str | None) -> tuple[VerificationKey, ...]:
        if kid is None:
            return self._by_alg.get(algorithm, ())
        return self._by_alg_kid.get((algorithm, kid), ()) + self._kidless.get(algorithm, ())

    def kids(self) -> frozenset[str]:
        return frozenset(k.kid for k in self.keys if k.kid is not None)
