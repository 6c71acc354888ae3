"""Verifying a bearer JWT: header policy, key choice, signature, claims.

One :class:`JwtAuthenticator` per runtime, shared by every route (verification does
not depend on the route; ``require_claims`` is the stage's business). The order of
checks is the order of trust:

1. the header, still unverified, is only *screened*: ``alg`` must be one the config
   lists (never ``none``, never chosen by the token); ``jku``, ``x5u``, ``jwk`` and
   ``x5c`` are refused (keys never come from the token); any ``crit`` is refused (we
   implement no extension, so every critical one is unknown);
2. the key is chosen by the config's binding of keys to algorithm families (see
   :mod:`gateway.auth.keys`) and the ``kid``; an unknown ``kid`` may refresh a remote
   JWKS, at most once per cooldown;
3. the signature is checked with that key by PyJWT's implementation of that one
   algorithm (on ``cryptography``); then ``iss`` (exact) and ``aud``, with PyJWT's
   semantics;
4. time claims are checked here, with an injectable clock (``exp`` required and
   finite; ``nbf`` and ``iat`` not in the future; ``leeway`` either way), then
   ``required_claims`` (strict equality: ``1`` is not ``true``), the subject, and the
   values to forward upstream.

Every failure is an :class:`AuthFailure` with a ``reason`` from :data:`REASONS`
(the metric label) and a fixed, caller-safe description (never token content).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError

from gateway.auth.jwks import RemoteJwks
from gateway.auth.keys import HMAC_ALGORITHMS, KeySet, VerificationKey
from gateway.auth.token_cache import VerifiedTokenCache
from gateway.config.auth import JwtConfig

__all__ = ["REASONS", "AuthFailure", "VerifiedToken", "JwtAuthenticator", "claim_matches"]

log = logging.getLogger("gateway.auth")

REASONS = (
    "missing",
    "malformed",
    "bad_header",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_audience",
    "bad_claim",
    "insufficient_claims",
)
"""Every ``reason`` label of ``gateway_auth_failures_total``."""

_REFUSED_HEADERS = ("jku", "x5u", "jwk", "x5c")
_MAX_SUBJECT = 256
_MAX_CANDIDATES = 8
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]*")


class AuthFailure(Exception):
    """A token that must not be believed; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    subject: str
    claims: dict[str, Any]
    """The verified payload; shared by every request presenting this token: read only."""
    upstream_headers: tuple[tuple[str, str], ...]
    """``forward_claims`` resolved for this token, ready to send upstream."""
    expires_at: float


def claim_matches(actual: Any, expected: str | int | bool) -> bool:
    """Strict equality: types must agree (``True`` is not ``1``, ``"1"`` is not ``1``)."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    return type(actual) is type(expected) and actual == expected


def _numeric(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AuthFailure("bad_claim", f"the {name} claim is not a NumericDate")
    return float(value)


def _header_value(value: Any) -> str | None:
    """A claim as a header value; ``None`` for a value that cannot be one safely.

    Decided here, at verification, so such a token is a 401 like any other bad claim
    rather than a failure while the upstream request is written."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        text = str(value)
    elif isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        text = ",".join(str(v) for v in value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None  # CR/LF would split the header block, NUL ends it for some parsers
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: valid in JSON ("\ud800"), but it has no UTF-8 bytes.
            return None
    return text


def _segment(text: str) -> bytes:
    """One base64url segment, strictly: the alphabet only, no padding, and canonical
    (re-encoding gives the same text), so one token has exactly one spelling."""
    if len(text) % 4 == 1 or _SEGMENT_RE.fullmatch(text) is None:
        raise AuthFailure("malformed", "the token is not a well-formed JWT")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        raise AuthFailure("malformed", "the token is not a well-formed JWT")
    return data


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise AuthFailure("malformed", "the token is not a well-formed JWT") from None
    if not isinstance(value, dict):
        raise AuthFailure("malformed", "the token is not a well-formed JWT")
    return value


class JwtAuthenticator:
    """Verifies tokens against one ``auth.jwt`` config; remembers the good ones."""

    def __init__(
        self,
        config: JwtConfig,
        *,
        clock: Callable[[], float] = time.time,
        remote: RemoteJwks | None = None,
        previous: JwtAuthenticator | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._algorithms = frozenset(config.algorithms)
        self._static = KeySet(self._static_keys(config))
        self.remote = remote
        if remote is None and config.jwks_url is not None:
            self.remote = RemoteJwks(
                config.jwks_url,
                allowed=self._algorithms,
                timeout=config.jwks_timeout,
                refresh_every=config.jwks_refresh,
                cooldown=config.jwks_cooldown,
            )
        if self.remote is not None and previous is not None and previous.remote is not None:
            # A reload keeps the remote keys already known, so an identity provider
            # that is down during the reload does not log everyone out.
            self.remote.adopt(previous.remote)
        self.cache = VerifiedTokenCache(max_entries=config.cache_size, clock=clock) if config.cache_size else None
        audience = config.audience
        self._audiences = None if audience is None else frozenset([audience] if isinstance(audience, str) else audience)
        algorithms = get_default_algorithms()
        self._verifiers = {name: algorithms[name] for name in config.algorithms}
        self._required = tuple(config.required_claims.items())
        self._forward = tuple(config.forward_claims.items())
        self._subject_claim = config.subject_claim
        self._leeway = config.leeway

    def _static_keys(self, config: JwtConfig) -> list[VerificationKey]:
        keys: list[VerificationKey] = []
        listed = self._algorithms
        if config.secret is not None:
            hmac = listed & frozenset(HMAC_ALGORITHMS)
            keys.append(VerificationKey(None, hmac, config.secret.get_secret_value().encode(), "secret"))
        for keyfile in (config.public_key_file, config.jwks_file):
            if keyfile is None:
                continue
            for key in keyfile.keys:
                usable = key.algorithms & listed
                if usable:
                    keys.append(VerificationKey(key.kid, usable, key.key, key.source))
        return keys

    async def start(self) -> None:
        if self.remote is not None:
            await self.remote.start()

    async def close(self) -> None:
        if self.remote is not None:
            await self.remote.close()

    def cached(self, token: str) -> VerifiedToken | None:
        """A previous verification of this exact token, if still within its ``exp``."""
        return self.cache.get(token) if self.cache is not None else None

    async def verify(self, token: str) -> VerifiedToken:
        """Verify ``token`` (JWS compact form) or raise :class:`AuthFailure`."""
        header = self._screen_header(token)
        algorithm: str = header["alg"]
        kid: str | None = header.get("kid")
        keys = self._candidates(algorithm, kid)
        if not keys and self.remote is not None and await self.remote.refresh_for_unknown_kid():
            keys = self._candidates(algorithm, kid)
        if not keys:
            raise AuthFailure("unknown_kid", "no key is known for this token's kid and algorithm")
        payload = self._decode(token, algorithm, keys)
        verified = self._check_claims(payload)
        if self.cache is not None:
            self.cache.put(token, verified)
        return verified

    def _candidates(self, algorithm: str, kid: str | None) -> tuple[VerificationKey, ...]:
        keys = self._static.candidates(algorithm, kid)
        if self.remote is not None:
            keys += self.remote.keys.candidates(algorithm, kid)
        return keys[:_MAX_CANDIDATES]

    def _screen_header(self, token: str) -> dict[str, Any]:
        header = _json_object(_segment(token.partition(".")[0]))
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthFailure("bad_header", "the token's algorithm is not accepted")
        for name in _REFUSED_HEADERS:
            if name in header:
                raise AuthFailure("bad_header", f"the token header carries {name}; keys never come from the token")
        if "crit" in header:
            raise AuthFailure("bad_header", "the token has critical header extensions this gateway does not support")
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise AuthFailure("bad_header", "the token's kid is not a short string")
        return header

    def _decode(self, token: str, algorithm: str, keys: tuple[VerificationKey, ...]) -> dict[str, Any]:
        """Check the signature with each candidate key (PyJWT's algorithm, on
        ``cryptography``), then decode the payload and check ``iss``, ``aud``, ``sub``
        and ``jti`` as PyJWT's ``decode`` would. Done here rather than through
        ``jwt.decode`` because that re-parses the token and scans every character of it
        in Python, which was most of the cost of a verification."""
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthFailure("malformed", "the token is not a well-formed JWT")
        header_b64, payload_b64, signature_b64 = parts
        signature = _segment(signature_b64)
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii", "replace")
        verifier = self._verifiers[algorithm]
        for key in keys:
            try:
                if verifier.verify(signing_input, key.key, signature):
                    break
            except (InvalidKeyError, ValueError, TypeError) as exc:
                log.warning("key from %s cannot verify %s tokens: %s", key.source, algorithm, exc)
        else:
            raise AuthFailure("bad_signature", "the token's signature does not verify")
        payload = _json_object(_segment(payload_b64))
        issuer = self.config.issuer
        if issuer is not None:
            iss = payload.get("iss")
            if iss is None:
                raise AuthFailure("bad_issuer", "the token has no iss claim")
            if iss != issuer or not isinstance(iss, str):
                raise AuthFailure("bad_issuer", "the token comes from an issuer that is not trusted")
        self._check_audience(payload.get("aud"))
        for name in ("sub", "jti"):
            if name in payload and not isinstance(payload[name], str):
                raise AuthFailure("bad_claim", f"the token's {name} claim is not a string")
        return payload

    def _check_audience(self, aud: Any) -> None:
        audiences = self._audiences
        if audiences is None:
            if aud:
                raise AuthFailure("bad_audience", "the token is meant for an audience, and this gateway expects none")
            return
        if not aud:
            raise AuthFailure("bad_audience", "the token has no aud claim")
        claimed = [aud] if isinstance(aud, str) else aud
        if not isinstance(claimed, list) or not all(isinstance(c, str) for c in claimed):
            raise AuthFailure("bad_audience", "the token's aud claim is not a string or a list of strings")
        if audiences.isdisjoint(claimed):
            raise AuthFailure("bad_audience", "the token is not meant for this audience")

    def _check_claims(self, payload: dict[str, Any]) -> VerifiedToken:
        now = self._clock()
        leeway = self._leeway
        exp = _numeric(payload, "exp")
        if exp is None:
            raise AuthFailure("bad_claim", "the token has no exp claim")
        if exp <= now - leeway:
            raise AuthFailure("expired", "the token has expired")
        nbf = _numeric(payload, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise AuthFailure("not_yet_valid", "the token is not valid yet (nbf)")
        iat = _numeric(payload, "iat")
        if iat is not None and iat > now + leeway:
            raise AuthFailure("not_yet_valid", "the token was issued in the future (iat)")
        for name, expected in self._required:
            if not claim_matches(payload.get(name), expected):
                raise AuthFailure("bad_claim", f"the token's {name} claim does not have the required value")
        subject = payload.get(self._subject_claim)
        if isinstance(subject, bool) or not isinstance(subject, (str, int)) or subject == "":
            raise AuthFailure("bad_claim", f"the token has no usable {self._subject_claim} claim")
        subject_text = str(subject)
        if len(subject_text) > _MAX_SUBJECT or not subject_text.isprintable():
            raise AuthFailure("bad_claim", f"the token's {self._subject_claim} claim is not a usable identifier")
        headers: list[tuple[str, str]] = []
        for claim, header in self._forward:
            if claim not in payload or payload[claim] is None:
                continue
            value = _header_value(payload[claim])
            if value is None:
                raise AuthFailure("bad_claim", f"the token's {claim} claim cannot be forwarded as a header")
            headers.append((header, value))
        # The cache may keep the result until exp, not exp + leeway: past exp, the
        # token is verified again and the leeway decision is made afresh.
        return VerifiedToken(subject_text, payload, tuple(headers), exp)
