"""The auth stage: 401/403 forms, route modes, require_claims, identity handed on."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.stages import auth, authorize
from gateway.stages.auth import parse_bearer
from tests.jwt_keys import HS_SECRET, base_claims, forge, hs_token, key_pair, write, jwt_section
from tests.unit.stages.stage_harness import Upstream, call, chain, config_with, deps_for, metric

REALM = 'Bearer realm="gateway"'


def setup(tmp_path: Path, mode: str, require_claims: dict[str, Any] | None = None, **jwt_extra: Any):
    route: dict[str, Any] = {"auth": mode}
    if require_claims:
        route["require_claims"] = require_claims
    config = config_with(auth={"jwt": jwt_section(tmp_path, **jwt_extra)}, route=route)
    deps = deps_for(config)
    # authenticate decides, authorize refuses (throttling sits between them in a real chain).
    return chain(auth.build(config.routes[0], deps), authorize.build(config.routes[0], deps)), deps


def good() -> str:
    return key_pair("rsa").sign(base_claims())


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_no_stage_on_auth_none(tmp_path):
    stage, _ = setup(tmp_path, "none")
    assert stage is None


@pytest.mark.parametrize(
    ("mode", "authorization", "status", "challenge", "reason"),
    [
        ("required", None, 401, REALM, "missing"),
        ("optional", None, 200, None, None),
        ("required", "good", 200, None, None),
        ("optional", "good", 200, None, None),
        ("required", "Bearer garbage", 401, "invalid_token", "malformed"),
        ("optional", "Bearer garbage", 401, "invalid_token", "malformed"),
        ("optional", "Basic dXNlcjpwYXNz", 401, "invalid_token", "malformed"),
        ("required", "Bearer", 401, "invalid_token", "malformed"),
        ("required", "Bearer ", 401, "invalid_token", "malformed"),
        ("required", "", 401, "invalid_token", "malformed"),
        ("required", "expired", 401, "invalid_token", "expired"),
        ("optional", "expired", 401, "invalid_token", "expired"),
    ],
)
async def test_route_modes_and_challenges(tmp_path, mode, authorization, status, challenge, reason):
    stage, deps = setup(tmp_path, mode)
    if authorization == "good":
        authorization = f"Bearer {good()}"
    elif authorization == "expired":
        authorization = f"Bearer {key_pair('rsa').sign(base_claims(exp=int(time.time()) - 3600))}"
    upstream = Upstream()
    headers = {} if authorization is None else {"Authorization": authorization}
    response, ex = await call(stage, headers=headers, upstream=upstream)
    assert response.status == status
    if status == 200:
        assert len(upstream.calls) == 1
        return
    assert upstream.calls == []
    assert response.content_type == "application/problem+json"
    www = response.headers["WWW-Authenticate"]
    if challenge == REALM:
        assert www == REALM
    else:
        assert www.startswith('Bearer error="invalid_token", error_description="')
        assert www.endswith('"') and www.count('"') == 4
    assert ex.subject is None and ex.upstream_headers == []
    assert metric(deps, "gateway_auth_failures_total", route="r", reason=reason) == 1


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_scheme_is_case_insensitive(tmp_path, scheme):
    stage, _ = setup(tmp_path, "required")
    response, ex = await call(stage, headers={"Authorization": f"{scheme} {good()}"})
    assert response.status == 200 and ex.subject == "42"


def unsigned(header: dict[str, Any]) -> str:
    return f"{b64(header)}.{b64(base_claims())}."


BAD = {
    "alg none": lambda: unsigned({"alg": "none"}),
    "RS/HS confusion": lambda: forge({"alg": "HS256"}, base_claims(), key_pair("rsa").public_pem()),
    "expired": lambda: key_pair("rsa").sign(base_claims(exp=int(time.time()) - 600)),
    "future nbf": lambda: key_pair("rsa").sign(base_claims(nbf=int(time.time()) + 600)),
    "wrong iss": lambda: key_pair("rsa").sign(base_claims(iss="evil")),
    "unexpected aud": lambda: key_pair("rsa").sign(base_claims(aud="other")),
    "missing exp": lambda: key_pair("rsa").sign(base_claims(exp=None)),
    "refresh token": lambda: key_pair("rsa").sign(base_claims(token_type="refresh")),
    "jku": lambda: key_pair("rsa").sign(base_claims(), headers={"jku": "https://evil/jwks"}),
    "x5u": lambda: key_pair("rsa").sign(base_claims(), headers={"x5u": "https://evil/x"}),
    "embedded jwk": lambda: key_pair("rsa-b").sign(base_claims(), headers={"jwk": key_pair("rsa-b").jwk()}),
    "crit": lambda: key_pair("rsa").sign(base_claims(), headers={"crit": ["foo"], "foo": 1}),
    "other key": lambda: key_pair("rsa-b").sign(base_claims()),
    "hs with a real secret": lambda: hs_token(base_claims(), secret=HS_SECRET),
    "garbage": lambda: "a.b.c",
    "two tokens": lambda: f"{good()} {good()}",
    "token with a space": lambda: good().replace(".", ". ", 1),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_bad_tokens_are_401_and_never_reach_the_upstream(tmp_path, case, mode):
    stage, _ = setup(tmp_path, mode)
    upstream = Upstream()
    response, ex = await call(stage, headers={"Authorization": f"Bearer {BAD[case]()}"}, upstream=upstream)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert upstream.calls == [] and ex.subject is None


@pytest.mark.parametrize(
    ("require", "claims", "allowed"),
    [
        ({"groups": "Manager"}, {"groups": ["Manager"]}, True),
        ({"groups": "Manager"}, {"groups": ["Customer", "Manager"]}, True),
        ({"groups": "Manager"}, {"groups": ["Customer"]}, False),
        ({"groups": "Manager"}, {"groups": []}, False),
        ({"groups": "Manager"}, {"groups": "Manager"}, True),
        ({"groups": "Manager"}, {"groups": "Managers"}, False),
        ({"groups": "Manager"}, {"groups": None}, False),
        ({"groups": "Manager"}, {"groups": [["Manager"]]}, False),
        ({"is_staff": True}, {"is_staff": True}, True),
        ({"is_staff": True}, {"is_staff": 1}, False),
        ({"level": 3}, {"level": 3}, True),
        ({"level": 3}, {"level": "3"}, False),
        ({"groups": "Manager", "level": 3}, {"groups": ["Manager"], "level": 2}, False),
    ],
)
async def test_require_claims(tmp_path, require, claims, allowed):
    stage, deps = setup(tmp_path, "required", require_claims=require)
    upstream = Upstream()
    token = key_pair("rsa").sign(base_claims(**claims))
    response, ex = await call(stage, headers={"Authorization": f"Bearer {token}"}, upstream=upstream)
    if allowed:
        assert response.status == 200 and len(upstream.calls) == 1
    else:
        assert response.status == 403 and upstream.calls == []
        assert "WWW-Authenticate" not in response.headers
        assert metric(deps, "gateway_auth_failures_total", route="r", reason="insufficient_claims") == 1


async def test_a_verified_token_sets_the_identity_and_the_forwarded_headers(tmp_path):
    stage, _ = setup(tmp_path, "optional", forward_claims={"user_id": "X-User-Id", "groups": "X-User-Groups"})
    token = key_pair("rsa").sign(base_claims(user_id=7, groups=["Manager"]))
    response, ex = await call(stage, headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert ex.subject == "7"
    assert ex.claims is not None and ex.claims["groups"] == ["Manager"]
    assert ex.upstream_headers == [("X-User-Id", "7"), ("X-User-Groups", "Manager")]


async def test_anonymous_on_an_optional_route_has_no_identity(tmp_path):
    stage, _ = setup(tmp_path, "optional")
    response, ex = await call(stage)
    assert response.status == 200 and ex.subject is None and ex.claims is None and ex.upstream_headers == []


async def test_a_hot_token_is_verified_once(tmp_path, monkeypatch):
    stage, deps = setup(tmp_path, "required")
    authenticator = deps.authenticator
    assert authenticator is not None
    calls = 0
    original = authenticator.verify

    async def counting(token: str):
        nonlocal calls
        calls += 1
        return await original(token)

    monkeypatch.setattr(authenticator, "verify", counting)
    token = good()
    for _ in range(5):
        response, ex = await call(stage, headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200 and ex.subject == "42"
    assert calls == 1


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer a.b.c", "a.b.c"),
        ("bearer   a.b.c  ", "a.b.c"),
        ("Bearer a.b.", "a.b."),
        ("Bearer a.b", None),
        ("Bearer a.b.c.d", None),
        ("Bearer\ta.b.c", None),
        ("Bearera.b.c", None),
        ("Token a.b.c", None),
        ("Bearer a+b.c.d", None),
        ("Bearer é.b.c", None),
        ("Bearer " + "a" * 20000 + ".b.c", None),
    ],
)
def test_parse_bearer(value, token):
    assert parse_bearer(value) == token


_STAGES: dict[str, Any] = {}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.text(alphabet="Bearer .-_=+/abcXYZ019é\x00\x7f", max_size=60),
    st.builds(lambda a, b, c: f"Bearer {a}.{b}.{c}", st.text("AZaz09-_", max_size=40),
              st.text("AZaz09-_", max_size=40), st.text("AZaz09-_", max_size=40)),
))
def test_no_authorization_value_is_ever_a_server_error(tmp_path, value):
    if "stage" not in _STAGES:
        _STAGES["stage"], _ = setup(tmp_path, "optional")
    upstream = Upstream()
    response, _ = asyncio.run(call(_STAGES["stage"], headers={"Authorization": value}, upstream=upstream))
    assert response.status in (200, 401), value
    assert response.status == 401 or len(upstream.calls) == 1
