"""``auth.jwt`` and the route keys ``auth`` / ``require_claims``.

Key files are read and parsed here, while the config is validated, so that a
missing or wrong key is an error of ``gateway check`` naming the key
(``auth.jwt.public_key_file: keys/jwt.pub: this is a private key ...``), not a
crash at start-up or a 401 for every caller. The parsed keys travel with the
validated config; the runtime never reads the file a second time. Relative paths
are relative to the working directory of the ``gateway`` process.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainValidator, SecretStr, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError
from yarl import URL

from gateway.auth.keys import (
    ALGORITHMS,
    HMAC_ALGORITHMS,
    KeyMaterialError,
    VerificationKey,
    algorithms_for_key,
    describe_key,
    load_public_key_pem,
    looks_like_key_material,
    parse_jwks,
)
from gateway.config.base import Model
from gateway.config.errors import ConfigIssue
from gateway.config.types import Duration
from gateway.headers import GATEWAY_SET, HOP_BY_HOP, canonical_name

__all__ = ["JwtConfig", "AuthConfig", "KeyFile", "ClaimValue", "check_auth", "HMAC_MIN_BYTES"]

_MAX_KEY_FILE = 1024 * 1024
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
"""RFC 7518 §3.2: an HMAC key at least as long as the hash output."""

# Headers a claim may never be forwarded as: connection-scoped, set by the gateway
# itself, or credentials the backend would read as something else.
_RESERVED_HEADERS = frozenset(GATEWAY_SET | HOP_BY_HOP | {"authorization", "cookie", "host", "content-length", "content-type"})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True, eq=False)
class KeyFile:
    """A key file as validated: its path and the keys parsed from it."""

    path: str
    keys: tuple[VerificationKey, ...]

    def __str__(self) -> str:
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyFile) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


def _read(value: Any) -> tuple[str, bytes]:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("key", "expected a file path, got {value}", {"value": repr(value)})
    path = value.strip()
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        # A relative path worked where it was written (the repository root) and fails
        # where the process runs (a container's /): say where it was looked for.
        where = "" if Path(path).is_absolute() else f" (looked for {Path.cwd() / path})"
        raise PydanticCustomError(
            "key", "{path}: cannot read the file{where}: {reason}", {"path": path, "where": where, "reason": exc.strerror or str(exc)}
        ) from None
    if len(data) > _MAX_KEY_FILE:
        raise PydanticCustomError("key", "{path}: larger than 1MiB, not a key file", {"path": path})
    return path, data


def _load_pem_file(value: Any) -> KeyFile:
    if isinstance(value, KeyFile):
        return value
    path, data = _read(value)
    try:
        key = load_public_key_pem(data)
    except KeyMaterialError as exc:
        raise PydanticCustomError("key", "{path}: {reason}", {"path": path, "reason": str(exc)}) from None
    return KeyFile(path, (VerificationKey(kid=None, algorithms=algorithms_for_key(key), key=key, source=f"public_key_file {path}"),))


def _load_jwks_file(value: Any) -> KeyFile:
    if isinstance(value, KeyFile):
        return value
    path, data = _read(value)
    try:
        keys, problems = parse_jwks(data, source=f"jwks_file {path}", allowed=ALGORITHMS)
    except KeyMaterialError as exc:
        raise PydanticCustomError("key", "{path}: {reason}", {"path": path, "reason": str(exc)}) from None
    if problems:
        raise PydanticCustomError("key", "{path}: {reason}", {"path": path, "reason": "; ".join(problems)})
    if not keys:
        raise PydanticCustomError("key", "{path}: no signature verification key in this JWKS", {"path": path})
    return KeyFile(path, tuple(keys))


_KEY_FILE_SCHEMA = WithJsonSchema({"type": "string", "examples": ["keys/jwt.pub"]})
PemKeyFile = Annotated[KeyFile, PlainValidator(_load_pem_file), _KEY_FILE_SCHEMA]
JwksKeyFile = Annotated[KeyFile, PlainValidator(_load_jwks_file), _KEY_FILE_SCHEMA]


def _claim_value(value: Any) -> str | int | bool:
    if isinstance(value, (str, int, bool)) and not isinstance(value, float):
        return value
    raise PydanticCustomError(
        "claims", "expected a string, integer or boolean to compare the claim with, got {value}", {"value": repr(value)}
    )


ClaimValue = Annotated[
    str | int | bool, PlainValidator(_claim_value), WithJsonSchema({"type": ["string", "integer", "boolean"]})
]
"""A claim value compared for equality (or list membership, for ``require_claims``)."""


def _algorithm(value: Any) -> str:
    if isinstance(value, str):
        if value.strip().lower() == "none":
            raise PydanticCustomError("jwt", "'none' is never accepted: every token must be signed")
        for known in ALGORITHMS:
            if value.strip().upper() == known.upper():
                return known
    raise PydanticCustomError(
        "jwt", "expected one of {known}, got {value}", {"known": ", ".join(ALGORITHMS), "value": repr(value)}
    )


Algorithm = Annotated[str, PlainValidator(_algorithm), WithJsonSchema({"enum": list(ALGORITHMS)})]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class JwtConfig(Model):
    algorithms: Annotated[
        tuple[Algorithm, ...], BeforeValidator(_one_or_many, json_schema_input_type=Algorithm | list[Algorithm])
    ] = Field(min_length=1)
    """Accepted ``alg`` values; the token's ``alg`` must be one of them."""
    secret: Annotated[SecretStr | None, BeforeValidator(_empty_to_none)] = None
    """The HS* shared secret (never a PEM or JWK: that is key confusion)."""
    public_key_file: PemKeyFile | None = None
    jwks_file: JwksKeyFile | None = None
    jwks_url: str | None = None
    jwks_timeout: Duration = Field(default=2.0, gt=0, le=30.0)
    """Per fetch of ``jwks_url``."""
    jwks_refresh: Duration = Field(default=300.0, ge=10.0)
    """Background refresh period of ``jwks_url``."""
    jwks_cooldown: Duration = Field(default=30.0, ge=1.0)
    """At most one extra fetch of ``jwks_url`` per this period for tokens naming an unknown ``kid``."""
    issuer: str | None = None
    """``iss`` must equal this exactly when set."""
    audience: str | tuple[str, ...] | None = None
    """``aud`` must contain (one of) these when set; a token with an ``aud`` is refused when unset."""
    leeway: Duration = 30.0
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (at most 5m)."""
    required_claims: dict[str, ClaimValue] = {}
    """Claims that must be present and equal, e.g. ``{token_type: access}``."""
    subject_claim: str = Field(default="sub", min_length=1)
    """The claim naming the caller: throttle key, cache key for ``per_user``, logs."""
    forward_claims: dict[str, str] = {}
    """Claim -> request header sent upstream, e.g. ``{user_id: X-User-Id}``."""
    cache_size: int = Field(default=10_000, ge=0, le=1_000_000)
    """Verified tokens remembered (until their ``exp``) to skip re-verifying; 0 turns it off."""

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and looks_like_key_material(value.get_secret_value()):
            raise PydanticCustomError(
                "jwt",
                "looks like a public key or JWK, not an HMAC secret; put public keys in public_key_file, "
                "jwks_file or jwks_url (using one as an HMAC secret is the RS/HS key-confusion attack)",
            )
        return value

    @field_validator("leeway")
    @classmethod
    def _leeway(cls, value: float) -> float:
        if value > 300:
            raise PydanticCustomError("duration", "expected at most 5m (a larger leeway accepts long-expired tokens), got {value}s", {"value": value})
        return value

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = URL(value)
        except (ValueError, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host or url.user or url.fragment:
            raise PydanticCustomError("url", "expected an https URL like https://idp.example.com/jwks.json, got {value}", {"value": repr(value)})
        if url.scheme == "http" and not _is_loopback(url.host):
            raise PydanticCustomError(
                "url",
                "expected https: keys fetched over plain http can be swapped by anyone on the path "
                "(http is accepted only for loopback), got {value}",
                {"value": repr(value)},
            )
        return value

    @field_validator("forward_claims")
    @classmethod
    def _forward(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for claim, header in value.items():
            if not header or not _TOKEN_CHARS.issuperset(header):
                raise PydanticCustomError("jwt", "expected a header name like X-User-Id for claim {claim}, got {value}", {"claim": repr(claim), "value": repr(header)})
            folded = canonical_name(header)
            if folded in _RESERVED_HEADERS or folded.startswith("proxy-"):
                raise PydanticCustomError("jwt", "{value} is set or stripped by the gateway itself; pick another header", {"value": repr(header)})
            if folded in seen:
                raise PydanticCustomError(
                    "jwt", "{a} and {b} are the same header to a backend that folds '_' and '.' to '-'", {"a": repr(seen[folded]), "b": repr(header)}
                )
            seen[folded] = header
        return value


class AuthConfig(Model):
    jwt: JwtConfig | None = None


def _key_issues(jwt: JwtConfig) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    listed = frozenset(jwt.algorithms)
    hmac = [a for a in jwt.algorithms if a in HMAC_ALGORITHMS]
    if jwt.secret is not None:
        if not hmac:
            issues.append(ConfigIssue("auth.jwt.secret", "is set, but algorithms lists no HS* algorithm that would use it"))
        else:
            need = max(HMAC_MIN_BYTES[a] for a in hmac)
            have = len(jwt.secret.get_secret_value().encode())
            if have < need:
                issues.append(
                    ConfigIssue("auth.jwt.secret", f"expected at least {need} bytes for {max(hmac)} (RFC 7518 §3.2), got {have}")
                )
    elif hmac:
        issues.append(ConfigIssue("auth.jwt.algorithms", f"no secret to verify {', '.join(hmac)}: set auth.jwt.secret"))
    static: set[str] = set()
    for field, keyfile in (("public_key_file", jwt.public_key_file), ("jwks_file", jwt.jwks_file)):
        if keyfile is None:
            continue
        serves = frozenset().union(*(k.algorithms for k in keyfile.keys))
        if not serves & listed:
            what = describe_key(keyfile.keys[0].key) if field == "public_key_file" else "its keys"
            issues.append(
                ConfigIssue(
                    f"auth.jwt.{field}",
                    f"{keyfile.path}: {what} can verify {', '.join(sorted(serves))}, but algorithms lists "
                    f"{', '.join(jwt.algorithms)}",
                )
            )
        static |= serves
    if jwt.jwks_url is None:
        orphans = [a for a in jwt.algorithms if a not in HMAC_ALGORITHMS and a not in static]
        if orphans:
            issues.append(
                ConfigIssue(
                    "auth.jwt.algorithms",
                    f"no key can verify {', '.join(orphans)}: set public_key_file, jwks_file or jwks_url with a "
                    "key of that type (secret is only for HS*)",
                )
            )
    return issues


def check_auth(config: Any) -> list[ConfigIssue]:
    """Cross-section rules for ``auth`` and the routes' ``auth`` keys (called by ``parse_config``)."""
    jwt: JwtConfig | None = config.auth.jwt
    issues = _key_issues(jwt) if jwt is not None else []
    for index, route in enumerate(config.routes):
        if route.auth != "none" and jwt is None:
            issues.append(ConfigIssue(f"routes[{index}].auth", f"is {route.auth!r}, but there is no auth.jwt section"))
        if route.require_claims and route.auth != "required":
            issues.append(
                ConfigIssue(f"routes[{index}].require_claims", "needs auth: required (anonymous callers have no claims)")
            )
    return issues
