"""``gateway token``: mint a signed test token that the configured gateway accepts.

For demos and smoke tests, not for production identity: the token carries the
subject (under ``auth.jwt.subject_claim``), ``required_claims``, ``iss``/``aud`` from the
config, ``iat``, ``exp`` and a random ``jti``, plus any ``--claim k=v``.

Key choice: with HS* in ``algorithms`` and a ``secret`` in the config, that secret
signs. The config holds only the *public* half of an asymmetric key, so RS*/PS*/ES*/
EdDSA tokens need ``--key-file PRIVATE.pem`` (for the demo, the sample backend's
``keys/jwt.key``); the algorithm is the first one listed that fits that key.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt

from gateway.auth.keys import HMAC_ALGORITHMS, KeyMaterialError, algorithms_for_key, describe_key, load_private_key_pem
from gateway.config.auth import JwtConfig

__all__ = ["MintError", "mint_token", "parse_claims"]


class MintError(Exception):
    """The token cannot be minted as asked; the message says why, for the command line."""


def parse_claims(pairs: Sequence[str]) -> dict[str, Any]:
    """``["groups=[\\"Manager\\"]", "n=5", "name=Ann"]`` -> claims; values are JSON when
    they parse as JSON, else the literal string."""
    claims: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise MintError(f"expected --claim NAME=VALUE, got {pair!r}")
        try:
            claims[name] = json.loads(raw)
        except ValueError:
            claims[name] = raw
    return claims


def _signing_key(config: JwtConfig, key_file: Path | None, algorithm: str | None) -> tuple[Any, str]:
    if key_file is not None:
        try:
            private = load_private_key_pem(key_file.read_bytes())
        except OSError as exc:
            raise MintError(f"{key_file}: {exc.strerror or exc}") from None
        except KeyMaterialError as exc:
            raise MintError(f"{key_file}: {exc}") from None
        fits = algorithms_for_key(private.public_key()) if hasattr(private, "public_key") else frozenset()
        choices = [a for a in config.algorithms if a in fits]
        if algorithm is not None:
            choices = [algorithm] if algorithm in choices else []
        if not choices:
            raise MintError(
                f"{key_file} is {describe_key(private)}; auth.jwt.algorithms ({', '.join(config.algorithms)}) "
                "lists no algorithm it can sign" + (f" as {algorithm}" if algorithm else "")
            )
        return private, choices[0]
    hmac = [a for a in config.algorithms if a in HMAC_ALGORITHMS]
    if algorithm is not None:
        hmac = [algorithm] if algorithm in hmac else []
    if config.secret is None or not hmac:
        raise MintError(
            "the config has no HS* secret to sign with; pass --key-file PRIVATE.pem "
            "(the private half of auth.jwt.public_key_file)"
        )
    return config.secret.get_secret_value().encode(), hmac[0]


def mint_token(
    config: JwtConfig,
    *,
    subject: str,
    claims: Mapping[str, Any] = {},
    ttl: float = 900.0,
    key_file: Path | None = None,
    algorithm: str | None = None,
    kid: str | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    key, alg = _signing_key(config, key_file, algorithm)
    now = int(clock())
    payload: dict[str, Any] = {config.subject_claim: subject, **config.required_claims}
    if config.issuer is not None:
        payload["iss"] = config.issuer
    if config.audience is not None:
        payload["aud"] = config.audience if isinstance(config.audience, str) else list(config.audience)
    payload.update(iat=now, exp=now + int(ttl), jti=os.urandom(12).hex())
    payload.update(claims)
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)
