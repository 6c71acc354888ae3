"""Throttling through the real ``gateway run`` process (memory store): who the caller
is, which requests count, and what every answer of a throttled route carries."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from tests.integration.conftest import StubUpstream
from tests.jwt_keys import HS_SECRET, base_claims, hs_token

JWT = {"algorithms": ["HS256"], "secret": HS_SECRET, "subject_claim": "user_id"}
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def bearer(subject: str, *, secret: str = HS_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs_token(base_claims(user_id=subject), secret=secret)}"}


def seed_config(upstream: str, **sections: Any) -> dict[str, Any]:
    """The seed's shape: reads open to all and not throttled; creating is throttled."""
    return {
        "auth": {"jwt": JWT},
        "throttle": {"anonymous": "3/minute", "authenticated": "5/minute"},
        **sections,
        "upstreams": {"menu": {"targets": [upstream]}},
        "routes": [
            {"name": "menu-read", "match": {"path": "/api/menu-items", "methods": ["GET", "HEAD"]},
             "upstream": "menu", "auth": "optional", "throttle": False},
            {"name": "menu-create", "match": {"path": "/api/menu-items", "methods": ["POST"]},
             "upstream": "menu", "auth": "optional", "throttle": {"authenticated": "2/minute"}},
            {"name": "other", "match": {"path": "/other"}, "upstream": "menu", "auth": "optional"},
        ],
    }


async def send(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.request(method, url, **kwargs) as response:
        await response.read()
        return response.status, response.headers


async def test_only_the_create_action_is_throttled(stub: StubUpstream, gateway_factory: Any) -> None:
    gw = gateway_factory(seed_config(stub.url))
    url = gw.url + "/api/menu-items"
    async with aiohttp.ClientSession() as session:
        reads = [await send(session, "GET", url) for _ in range(10)]
        assert {status for status, _ in reads} == {200}
        assert not any("RateLimit-Limit" in headers for _, headers in reads)
        creates = [await send(session, "POST", url, json={}, headers=bearer("alice")) for _ in range(3)]
        assert [status for status, _ in creates] == [200, 200, 429]
        assert [h["RateLimit-Remaining"] for _, h in creates] == ["1", "0", "0"]
        assert creates[0][1]["RateLimit-Limit"] == "2"  # the route's own authenticated rate
        # Anonymous creators get the global anonymous rate, by IP.
        anonymous = [await send(session, "POST", url, json={}) for _ in range(4)]
        assert [status for status, _ in anonymous] == [200, 200, 200, 429]
        assert anonymous[0][1]["RateLimit-Limit"] == "3"
        # Another route inheriting the defaults has buckets of its own.
        assert (await send(session, "GET", gw.url + "/other"))[0] == 200
    assert sum(r["method"] == "POST" for r in stub.requests) == 5


async def test_429_form(stub: StubUpstream, gateway_factory: Any) -> None:
    gw = gateway_factory(seed_config(stub.url))
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await send(session, "GET", gw.url + "/other")
        async with session.get(gw.url + "/other") as response:
            body = await response.json(content_type=None)
            assert response.status == 429
            assert response.headers["Content-Type"] == "application/problem+json"
            assert body["status"] == 429 and body["title"] == "Too Many Requests"
            assert int(response.headers["Retry-After"]) >= 1
            assert 1 <= int(response.headers["Retry-After"]) <= 20
            assert response.headers["Cache-Control"] == "no-store"
            assert [response.headers[h] for h in RATE_HEADERS] == ["3", "0", "60"]
            assert response.headers["X-Request-ID"]


async def test_rate_headers_on_every_kind_of_answer(make_stub: Any, gateway_factory: Any) -> None:
    big = b"x" * (256 * 1024)

    def routes(app: web.Application) -> None:
        async def stream(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(4):
                await response.write(big[: 64 * 1024])
            await response.write_eof()
            return response

        async def large(request: web.Request) -> web.Response:
            return web.Response(body=big)

        async def empty(request: web.Request) -> web.Response:
            return web.Response(status=204)

        app.router.add_get("/other/stream", stream)
        app.router.add_get("/other/big", large)
        app.router.add_get("/other/empty", empty)

    upstream = await make_stub(routes)
    config = seed_config(upstream.url, throttle={"anonymous": "100/minute"})
    config["upstreams"]["dead"] = {"targets": ["http://127.0.0.1:9"]}
    config["routes"].append({"name": "dead", "match": {"path": "/dead"}, "upstream": "dead", "throttle": {}})
    gw = gateway_factory(config)
    async with aiohttp.ClientSession() as session:
        answers = {
            "small": await send(session, "GET", gw.url + "/other/small"),
            "streamed": await send(session, "GET", gw.url + "/other/stream"),
            "large": await send(session, "GET", gw.url + "/other/big"),
            "no body": await send(session, "GET", gw.url + "/other/empty"),
            "head": await send(session, "HEAD", gw.url + "/other/small"),
            "401": await send(session, "GET", gw.url + "/other", headers={"Authorization": "Bearer x.y.z"}),
            "502": await send(session, "GET", gw.url + "/dead"),
        }
    statuses = {name: status for name, (status, _) in answers.items()}
    assert statuses == {"small": 200, "streamed": 200, "large": 200, "no body": 204, "head": 200, "401": 401, "502": 502}
    for name, (_, headers) in answers.items():
        assert all(h in headers for h in RATE_HEADERS), (name, dict(headers))
        assert headers["RateLimit-Limit"] == "100", name


async def test_rotating_forwarded_for_from_an_untrusted_peer_is_one_caller(stub: StubUpstream, gateway_factory: Any) -> None:
    gw = gateway_factory(seed_config(stub.url))
    async with aiohttp.ClientSession() as session:
        statuses = [
            (await send(session, "GET", gw.url + "/other", headers={"X-Forwarded-For": f"198.51.100.{n}",
                                                                 "Forwarded": f"for=203.0.113.{n}"}))[0]
            for n in range(6)
        ]
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_forged_tokens_never_drain_the_victims_bucket(stub: StubUpstream, gateway_factory: Any) -> None:
    gw = gateway_factory(seed_config(stub.url))
    url = gw.url + "/api/menu-items"
    forged = bearer("victim", secret="not-the-gateway-secret-0123456789abcdef")
    async with aiohttp.ClientSession() as session:
        attack = [await send(session, "POST", url, json={}, headers=forged) for _ in range(6)]
        # 401 while the attacker's IP has anonymous tokens left, then 429: a failed
        # token costs its client IP's anonymous bucket (3/minute), nobody else's.
        assert [status for status, _ in attack] == [401, 401, 401, 429, 429, 429]
        assert attack[0][1]["RateLimit-Limit"] == "3"
        status, headers = await send(session, "POST", url, json={}, headers=bearer("victim"))
        assert status == 200
        assert headers["RateLimit-Limit"] == "2" and headers["RateLimit-Remaining"] == "1"
    assert sum(r["method"] == "POST" for r in stub.requests) == 1


async def test_a_missing_required_token_costs_the_anonymous_bucket(stub: StubUpstream, gateway_factory: Any) -> None:
    config = seed_config(stub.url)
    config["routes"][1]["auth"] = "required"
    gw = gateway_factory(config)
    async with aiohttp.ClientSession() as session:
        statuses = [(await send(session, "POST", gw.url + "/api/menu-items", json={}))[0] for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        assert (await send(session, "POST", gw.url + "/api/menu-items", json={}, headers=bearer("alice")))[0] == 200
    assert sum(r["method"] == "POST" for r in stub.requests) == 1


async def test_concurrent_callers_get_exactly_the_limit(stub: StubUpstream, gateway_factory: Any) -> None:
    gw = gateway_factory(seed_config(stub.url, throttle={"anonymous": "10/minute"}))
    async with aiohttp.ClientSession() as session:
        statuses = await asyncio.gather(*(send(session, "GET", gw.url + "/other") for _ in range(40)))
    assert sorted(status for status, _ in statuses) == [200] * 10 + [429] * 30


async def test_metrics_count_refusals(stub: StubUpstream, gateway_factory: Any) -> None:
    gw = gateway_factory(seed_config(stub.url))
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            await send(session, "GET", gw.url + "/other")
        async with session.get(gw.admin_url + "/metrics") as response:
            text = await response.text()
        async with session.get(gw.admin_url + "/status") as response:
            status = await response.json()
    assert 'gateway_throttled_total{caller="anonymous",route="other"} 2.0' in text
    assert 'gateway_throttled_total{caller="authenticated",route="other"} 0.0' in text
    assert status["store"]["kind"] == "memory"
    stages = {route["name"]: route["stages"] for route in status["routes"]}
    assert stages["other"] == ["authenticate", "throttle", "authorize"]
    assert stages["menu-read"] == ["authenticate", "authorize"]
