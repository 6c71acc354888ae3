"""Authentication: who the caller is, from a bearer JWT (SPEC §3 ``auth``, §4a "JWT").

Sits after the firewall and before throttling and caching, because both of those key
on the verified subject: a request leaves this stage either anonymous (no token, on an
``optional`` route) or with ``ex.subject`` / ``ex.claims`` set from a token whose
signature and claims verified -- never with an identity taken on the token's word.

This stage only *decides*: a missing (where required) or invalid token is recorded as
``ex.auth_problem`` and the request goes on, still anonymous, through throttling --
so a caller guessing tokens spends its client IP's anonymous bucket -- to the
``authorize`` stage (``authorize.py``), which raises it. Nothing reaches the
upstream in between: throttling either refuses or hands on to ``authorize``.

Per route (``auth``):
- ``none``: this stage is not in the chain; the ``Authorization`` header passes to
  the backend untouched.
- ``optional``: no ``Authorization`` header -> anonymous; a header that is not a valid
  bearer JWT -> 401 (a broken token is never silently downgraded to anonymous).
- ``required``: no header -> 401 with ``WWW-Authenticate: Bearer realm="gateway"``.

A token present but invalid is 401 with ``Bearer error="invalid_token",
error_description="..."`` (RFC 6750 §3). ``require_claims`` not met is 403 (checked
by ``authorize``). The upstream is never contacted for any of these. ``forward_claims`` headers are queued on
``ex.upstream_headers``; the client's own copies of those headers (in every spelling)
were already stripped by the forwarder's header filter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from types import MappingProxyType

from gateway.auth.verifier import REASONS, AuthFailure, VerifiedToken
from gateway.config.models import RouteConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.pipeline import Stage, StageDeps
from gateway.problem import Problem

__all__ = ["build", "parse_bearer", "MAX_TOKEN_LENGTH"]

log = logging.getLogger("gateway.auth")

MAX_TOKEN_LENGTH = 16 * 1024
# RFC 6750 b64token, narrowed to the JWS compact form: three base64url segments
# (the third may be empty only to reach the header check, which refuses alg "none").
_BEARER_RE = re.compile(r"(?i:bearer) +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*) *")
_CHALLENGE_MISSING = MappingProxyType({"WWW-Authenticate": 'Bearer realm="gateway"'})
_MALFORMED = "the Authorization header must be 'Bearer <JWT>'"


def parse_bearer(value: str) -> str | None:
    """The JWT of an ``Authorization: Bearer <JWT>`` value, or ``None``."""
    if len(value) > MAX_TOKEN_LENGTH:
        return None
    match = _BEARER_RE.fullmatch(value)
    return match.group(1) if match is not None else None


def _challenge(description: str) -> dict[str, str]:
    # A quoted-string may not hold '"' or '\'; our descriptions do not, but be sure.
    safe = description.replace("\\", "").replace('"', "'")
    return {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{safe}"'}


def build(route: RouteConfig, deps: StageDeps) -> Stage | None:
    if route.auth == "none":
        return None
    authenticator = deps.authenticator
    if authenticator is None:  # parse_config refuses this; a hand-built config may not
        raise ValueError(f"route {route.name!r} has auth: {route.auth}, but there is no auth.jwt section")
    required = route.auth == "required"
    failures = deps.metrics.auth_failures(route.name, REASONS)
    route_name = route.name

    def refuse(failure: AuthFailure) -> Problem:
        failures[failure.reason].inc()
        log.debug("route %s: token refused (%s): %s", route_name, failure.reason, failure.description)
        return Problem(401, failure.description, headers=_challenge(failure.description))

    def accept(ex: Exchange, verified: VerifiedToken) -> None:
        ex.subject = verified.subject
        ex.claims = verified.claims
        if verified.upstream_headers:
            ex.upstream_headers.extend(verified.upstream_headers)

    async def verify(ex: Exchange, token: str) -> None:
        try:
            accept(ex, await authenticator.verify(token))
        except AuthFailure as failure:
            ex.auth_problem = refuse(failure)

    def authenticate(request: EdgeRequest, ex: Exchange) -> Awaitable[None] | None:
        value = request.authorization
        if value is None:
            if required:
                failures["missing"].inc()
                ex.auth_problem = Problem(401, "this route needs a bearer token", headers=_CHALLENGE_MISSING)
            return None
        token = parse_bearer(value)
        if token is None:
            ex.auth_problem = refuse(AuthFailure("malformed", _MALFORMED))
            return None
        verified = authenticator.cached(token)
        if verified is None:
            # Not verified before (or expired from the cache): the signature check, and
            # perhaps a JWKS fetch, is the one part that awaits.
            return verify(ex, token)
        accept(ex, verified)
        return None

    return authenticate
