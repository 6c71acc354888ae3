"""CORS: preflights answered here, headers on actual responses, never a wrong origin."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from gateway.headers import add_response_headers
from gateway.stages import cors
from tests.unit.stages.stage_harness import Upstream, call, config_with, deps_for

APP = "https://app.example.com"
EVIL = "https://evil.example.com"


def stage_for(global_cors: dict[str, Any] | None = None, route_cors: Any = None):
    sections: dict[str, Any] = {}
    if global_cors is not None:
        sections["cors"] = global_cors
    route = {"cors": route_cors} if route_cors is not None else None
    config = config_with(route=route, **sections)
    return cors.build(config.routes[0], deps_for(config))


def preflight(origin: str = APP, method: str = "PUT", headers: str | None = "authorization, content-type") -> dict[str, str]:
    out = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        out["Access-Control-Request-Headers"] = headers
    return out


CREDENTIALED = {"allow_origins": [APP], "allow_credentials": True, "expose_headers": ["RateLimit-Remaining"]}


@pytest.mark.parametrize(
    ("policy", "route_cors"),
    [(None, None), ({"allow_origins": []}, None), ({"allow_origins": [APP]}, False)],
)
def test_no_stage_without_origins(policy, route_cors):
    assert stage_for(policy, route_cors) is None


async def test_preflight_is_answered_here_and_never_forwarded():
    stage = stage_for(CREDENTIALED)
    upstream = Upstream()
    response, _ = await call(stage, method="OPTIONS", headers=preflight(), upstream=upstream)
    assert upstream.calls == []
    assert response.status == 204
    h = response.headers
    assert h["Access-Control-Allow-Origin"] == APP
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert h["Access-Control-Allow-Methods"] == "GET, POST, PUT, PATCH, DELETE"
    assert h["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert h["Access-Control-Max-Age"] == "600"
    assert "Origin" in h["Vary"]


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (preflight(origin=EVIL), "origin"),
        (preflight(origin="null"), "origin"),
        (preflight(origin=APP + "/"), "origin"),
        (preflight(origin=APP.upper()), "origin"),
        (preflight(origin="https://app.example.com.evil.com"), "origin"),
        (preflight(method="TRACE"), "method"),
        (preflight(headers="authorization, x-secret"), "header"),
    ],
)
async def test_refused_preflights_are_403_without_cors_headers(headers, detail):
    stage = stage_for(CREDENTIALED)
    upstream = Upstream()
    response, _ = await call(stage, method="OPTIONS", headers=headers, upstream=upstream)
    assert response.status == 403 and upstream.calls == []
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert detail in response.text


@pytest.mark.parametrize(
    ("origin", "allow_origin", "credentials"),
    [(APP, APP, "true"), (EVIL, None, None), (None, None, None), ("null", None, None)],
)
async def test_actual_requests_get_headers_only_for_listed_origins(origin, allow_origin, credentials):
    stage = stage_for(CREDENTIALED)
    upstream = Upstream()
    headers = {"Origin": origin} if origin else {}
    response, ex = await call(stage, headers=headers, upstream=upstream)
    assert len(upstream.calls) == 1  # CORS never blocks a request; the browser decides
    extra = dict(ex.extra_response_headers)
    assert extra.get("Access-Control-Allow-Origin") == allow_origin
    assert extra.get("Access-Control-Allow-Credentials") == credentials
    assert extra["Vary"] == "Origin"  # the answer depends on Origin, even when absent
    if allow_origin:
        assert extra["Access-Control-Expose-Headers"] == "RateLimit-Remaining"


async def test_wildcard_without_credentials_sends_star_and_no_vary():
    stage = stage_for({"allow_origins": ["*"]})
    for headers in ({"Origin": EVIL}, {}):
        _, ex = await call(stage, headers=headers)
        assert dict(ex.extra_response_headers) == {"Access-Control-Allow-Origin": "*"}
    response, _ = await call(stage, method="OPTIONS", headers=preflight(origin=EVIL, headers="content-type"))
    assert response.status == 204 and response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_wildcard_headers_name_what_was_asked():
    stage = stage_for({"allow_origins": [APP], "allow_headers": ["*"]})
    response, _ = await call(stage, method="OPTIONS", headers=preflight(headers="Authorization, X-Custom"))
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, x-custom"
    response, _ = await call(stage, method="OPTIONS", headers=preflight(headers="x-ok, bad header"))
    assert response.status == 403


async def test_cors_headers_are_on_refusals_of_later_stages():
    """A 401 from auth (after CORS) still carries the CORS headers, so a page can read it."""
    stage = stage_for(CREDENTIALED)

    async def refuse(request):
        from gateway.problem import Problem

        raise Problem(401, "no", headers={"WWW-Authenticate": 'Bearer realm="gateway"'})

    response, _ = await call(stage, headers={"Origin": APP}, upstream=refuse)  # type: ignore[arg-type]
    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize(
    ("global_cors", "route_cors", "expected_origin", "credentials"),
    [
        ({"allow_origins": [APP]}, None, APP, None),
        ({"allow_origins": [APP]}, {"allow_credentials": True}, APP, "true"),  # key by key
        ({"allow_origins": [APP]}, {"allow_origins": [EVIL]}, None, None),
        (None, {"allow_origins": [APP]}, APP, None),
    ],
)
async def test_route_override_is_key_by_key(global_cors, route_cors, expected_origin, credentials):
    stage = stage_for(global_cors, route_cors)
    _, ex = await call(stage, headers={"Origin": APP})
    extra = dict(ex.extra_response_headers)
    assert extra.get("Access-Control-Allow-Origin") == expected_origin
    assert extra.get("Access-Control-Allow-Credentials") == credentials


@pytest.mark.parametrize(
    ("upstream_vary", "expected"),
    [(None, "Origin"), ("Accept-Encoding", "Accept-Encoding, Origin"), ("origin", "origin"), ("*", "*")],
)
def test_vary_is_merged_with_the_upstreams(upstream_vary, expected):
    headers: CIMultiDict[str] = CIMultiDict()
    if upstream_vary:
        headers["Vary"] = upstream_vary
    headers["Access-Control-Allow-Origin"] = "https://stale.example"
    add_response_headers(headers, [("Vary", "Origin"), ("Access-Control-Allow-Origin", APP)])
    assert headers["Vary"] == expected
    assert headers.getall("Access-Control-Allow-Origin") == [APP]
