"""Authorization: refuse what ``authenticate`` found wanting (SPEC §4 401/403 rows).

Runs after throttling, so a request with a missing or invalid token has already
been counted against its client IP's anonymous bucket (SPEC §4a "One caller") before
its 401 is raised here; a valid token that lacks ``require_claims`` (403) has been
counted against its subject. A route with ``auth: none`` has neither stage.

``require_claims`` is checked only for a verified token: on an ``optional`` route a
request without a token stays anonymous, as it always was.
"""

from __future__ import annotations

from gateway.auth.verifier import REASONS, claim_matches
from gateway.config.models import RouteConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.pipeline import Stage, StageDeps
from gateway.problem import Problem

__all__ = ["build"]


def build(route: RouteConfig, deps: StageDeps) -> Stage | None:
    if route.auth == "none":
        return None
    requirements = tuple(route.require_claims.items())
    insufficient = deps.metrics.auth_failures(route.name, REASONS)["insufficient_claims"]

    def authorize(request: EdgeRequest, ex: Exchange) -> None:
        problem = ex.auth_problem
        if problem is not None:
            raise problem
        claims = ex.claims
        if requirements and claims is not None:
            for name, expected in requirements:
                actual = claims.get(name)
                if not (
                    any(claim_matches(item, expected) for item in actual)
                    if isinstance(actual, list)
                    else claim_matches(actual, expected)
                ):
                    insufficient.inc()
                    raise Problem(403, "the token does not grant access to this route")
        return None

    return authorize
