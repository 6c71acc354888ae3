"""A remote JWKS served by a stub aiohttp server on loopback: rotation, floods, outages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from gateway.auth.jwks import RemoteJwks
from gateway.auth.verifier import AuthFailure, JwtAuthenticator
from gateway.config import parse_config
from tests.jwt_keys import base_claims, jwks_document, key_pair

ROUTES = {"upstreams": {"a": {"targets": ["http://127.0.0.1:9"]}}, "routes": [{"name": "r", "match": {"path": "/"}, "upstream": "a"}]}


class IdP:
    """The stub identity provider: serves ``document`` (or fails as told), counts fetches."""

    def __init__(self) -> None:
        self.document: Any = jwks_document(key_pair("rsa").jwk("k1"))
        self.status = 200
        self.delay = 0.0
        self.fetches = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.document, bytes):
            return web.Response(status=self.status, body=self.document)
        return web.json_response(self.document, status=self.status)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def idp(aiohttp_server: Callable[..., Awaitable[Any]]) -> tuple[IdP, Any]:
    stub = IdP()
    app = web.Application()
    app.router.add_get("/jwks.json", stub.handle)
    server = await aiohttp_server(app)
    return stub, server


def make(url: str, clock: Clock, **kwargs: Any) -> tuple[JwtAuthenticator, RemoteJwks]:
    config = parse_config({"auth": {"jwt": {"algorithms": ["RS256", "ES256"], "jwks_url": url, "subject_claim": "user_id"}}, **ROUTES})
    assert config.auth.jwt is not None
    options = {"timeout": 0.5, "refresh_every": 3600.0, "cooldown": 30.0, **kwargs}
    remote = RemoteJwks(url, allowed={"RS256", "ES256"}, clock=clock, **options)
    return JwtAuthenticator(config.auth.jwt, remote=remote), remote


def token(name: str = "rsa", kid: str | None = "k1") -> str:
    return key_pair(name).sign(base_claims(iss=None), kid=kid)


async def reason(authenticator: JwtAuthenticator, value: str) -> str:
    with pytest.raises(AuthFailure) as info:
        await authenticator.verify(value)
    return info.value.reason


async def test_keys_are_fetched_at_start_and_used(idp):
    stub, server = idp
    authenticator, remote = make(str(server.make_url("/jwks.json")), Clock())
    await authenticator.start()
    try:
        assert stub.fetches == 1 and remote.keys.kids() == {"k1"}
        assert (await authenticator.verify(token())).subject == "42"
    finally:
        await authenticator.close()


async def test_rotation_is_picked_up_on_an_unknown_kid(idp):
    stub, server = idp
    clock = Clock()
    authenticator, remote = make(str(server.make_url("/jwks.json")), clock)
    await authenticator.start()
    try:
        stub.document = jwks_document(key_pair("rsa").jwk("k1"), key_pair("ec256").jwk("k2"))
        # Just fetched at start-up: within the cooldown, a new kid does not fetch again.
        assert await reason(authenticator, token("ec256", "k2")) == "unknown_kid"
        assert stub.fetches == 1
        clock.now += 30
        assert (await authenticator.verify(token("ec256", "k2"))).subject == "42"
        assert stub.fetches == 2
        assert (await authenticator.verify(token("rsa", "k1"))).subject == "42"
        assert stub.fetches == 2
    finally:
        await authenticator.close()


async def test_an_unknown_kid_flood_fetches_at_most_once_per_cooldown(idp):
    stub, server = idp
    clock = Clock()
    authenticator, remote = make(str(server.make_url("/jwks.json")), clock)
    await authenticator.start()
    clock.now += 30  # past the cooldown of the start-up fetch
    try:
        flood = [authenticator.verify(token(kid=f"made-up-{i}")) for i in range(200)]
        results = await asyncio.gather(*flood, return_exceptions=True)
        assert all(isinstance(r, AuthFailure) and r.reason == "unknown_kid" for r in results)
        assert stub.fetches == 2  # start-up + one shared refresh
        clock.now += 29
        assert await reason(authenticator, token(kid="another")) == "unknown_kid"
        assert stub.fetches == 2
        clock.now += 2  # the cooldown has passed: one more fetch is allowed
        assert await reason(authenticator, token(kid="yet-another")) == "unknown_kid"
        assert stub.fetches == 3
        assert (await authenticator.verify(token())).subject == "42"  # known keys unaffected
    finally:
        await authenticator.close()


@pytest.mark.parametrize(
    "outage",
    ["status 500", "garbage", "not a jwks", "only an oct key", "too slow", "too big", "server gone"],
)
async def test_a_failed_refresh_keeps_the_known_keys(idp, outage):
    stub, server = idp
    clock = Clock()
    authenticator, remote = make(str(server.make_url("/jwks.json")), clock)
    await authenticator.start()
    try:
        if outage == "status 500":
            stub.status = 500
        elif outage == "garbage":
            stub.document = b"<html>oops</html>"
        elif outage == "not a jwks":
            stub.document = {"keys": "nope"}
        elif outage == "only an oct key":
            stub.document = jwks_document({"kty": "oct", "k": "c2VjcmV0", "kid": "k9"})
        elif outage == "too slow":
            stub.delay = 2.0
        elif outage == "too big":
            stub.document = b"x" * (1024 * 1024 + 1)
        else:
            await server.close()
        clock.now += 60
        assert await reason(authenticator, token(kid="k-new")) == "unknown_kid"
        assert remote.fetches == 2
        assert remote.keys.kids() == {"k1"}
        assert (await authenticator.verify(token())).subject == "42"
    finally:
        await authenticator.close()


async def test_start_survives_an_unreachable_jwks_server_and_recovers(idp):
    stub, server = idp
    clock = Clock()
    stub.status = 503
    authenticator, remote = make(str(server.make_url("/jwks.json")), clock)
    await authenticator.start()
    try:
        assert len(remote.keys) == 0
        assert await reason(authenticator, token()) == "unknown_kid"  # within the cooldown of the start-up fetch
        stub.status = 200
        clock.now += 31
        assert (await authenticator.verify(token())).subject == "42"
    finally:
        await authenticator.close()


async def test_background_refresh_replaces_the_keys(idp):
    stub, server = idp
    authenticator, remote = make(str(server.make_url("/jwks.json")), Clock(), refresh_every=0.05)
    await authenticator.start()
    try:
        stub.document = jwks_document(key_pair("rsa-b").jwk("k2"))
        for _ in range(100):
            if remote.keys.kids() == {"k2"}:
                break
            await asyncio.sleep(0.02)
        assert remote.keys.kids() == {"k2"}
        assert await reason(authenticator, token("rsa", "k1")) == "unknown_kid"
        assert (await authenticator.verify(token("rsa-b", "k2"))).subject == "42"
    finally:
        await authenticator.close()


async def test_close_stops_the_background_task(idp):
    stub, server = idp
    authenticator, remote = make(str(server.make_url("/jwks.json")), Clock(), refresh_every=0.01)
    await authenticator.start()
    await authenticator.close()
    fetched = stub.fetches
    await asyncio.sleep(0.1)
    assert stub.fetches == fetched


async def test_a_reload_keeps_the_known_keys_when_the_idp_is_down(idp):
    stub, server = idp
    url = str(server.make_url("/jwks.json"))
    before, _ = make(url, Clock())
    await before.start()
    stub.status = 503
    config = parse_config({"auth": {"jwt": {"algorithms": ["RS256"], "jwks_url": url, "subject_claim": "user_id"}}, **ROUTES})
    assert config.auth.jwt is not None
    after = JwtAuthenticator(config.auth.jwt, previous=before)
    await before.close()
    await after.start()
    try:
        assert after.remote is not None and after.remote.fetches == 1  # tried, failed, kept
        assert (await after.verify(token())).subject == "42"
    finally:
        await after.close()
