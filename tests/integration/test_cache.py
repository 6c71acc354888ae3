"""The response cache, end to end: the real ``gateway run`` against stub origins.

Most tests share one gateway (``gw``) and one origin (``origin``), both module-scoped:
each test works under its own paths, so entries never cross tests. The origin runs
an aiohttp server on its own thread and event loop, so it outlives each test's loop;
a test installs a handler for its path and reads back what the origin received.
Tests that need another configuration (two workers, a tiny LRU) start their own
gateway. Timing: short ttls, and waits on conditions wherever the outcome is not a
matter of the clock; where it is (expiry), the sleeps are ttl + a margin.

A note on ages: the origin's ``Date`` has one-second resolution and counts towards
an entry's age (RFC 9111 §4.2.3 ``apparent_age``), so an entry may begin up to a
second old. Tests that need a HIT use lifetimes of two seconds or more.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.gateway_process import GatewayProcess, free_port
from tests.jwt_keys import HS_SECRET, base_claims, hs_token

ADMIN_TOKEN = "cache-admin-token"


def bearer(subject: str, *, secret: str = HS_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {hs_token(base_claims(user_id=subject), secret=secret)}"}


# -- the origin: an aiohttp server on its own thread ----------------------------------------

Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    path_qs: str
    headers: CIMultiDictProxy[str]


class Origin:
    """Answers every path; ``on(path, handler)`` overrides one. ``handler(request, n)``
    gets ``n``, the number of requests for that path (any method) so far, this one
    included. The default answer is ``<path_qs> n=<n>`` as text."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.handlers: dict[str, Handler] = {}
        self.seen: list[Seen] = []
        self.runners: list[web.AppRunner] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.url = ""
        """The main app's (:meth:`serve_app` starts more: one test stops its own)."""

    def start(self) -> Origin:
        self.thread.start()
        self.url = self.serve_app()
        return self

    def run(self, coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(10)  # type: ignore[arg-type]

    def on(self, path: str, handler: Handler) -> None:
        self.handlers[path] = handler

    def requests(self, path: str, method: str | None = None) -> list[Seen]:
        return [s for s in list(self.seen) if s.path == path and (method is None or s.method == method)]

    def count(self, path: str, method: str | None = None) -> int:
        return len(self.requests(path, method))

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(Seen(request.method, request.path, request.path_qs, request.headers))
        n = self.count(request.path)
        await request.read()
        handler = self.handlers.get(request.path)
        if handler is not None:
            return await handler(request, n)
        return web.Response(text=f"{request.path_qs} n={n}")

    def serve_app(self) -> str:
        async def start() -> str:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._answer)
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)
            return f"http://127.0.0.1:{port}"

        return self.run(start())

    def stop_app(self, url: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        for runner in self.runners:
            if any(site.name.endswith(f":{port}") for site in runner.sites):
                self.run(runner.cleanup())

    def serve_raw(self, handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> str:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await handle(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        async def start() -> str:
            server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
            self.servers.append(server)
            return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

        return self.run(start())

    def close(self) -> None:
        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()
            for server in self.servers:
                server.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def reply(status: int = 200, body: str | bytes = "", headers: dict[str, str] | None = None) -> web.Response:
    data = body.encode() if isinstance(body, str) else body
    return web.Response(status=status, body=data if status not in (204, 304) else None, headers=headers)


async def _async(value: Any) -> Any:
    """A ready value as an awaitable: lets a one-line handler be a lambda."""
    return value


async def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def gate(event: threading.Event) -> None:
    """Hold an origin handler until the test opens ``event``."""
    while not event.is_set():
        await asyncio.sleep(0.005)


# -- the client side --------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def x_cache(self) -> str | None:
        return self.headers.get("X-Cache")

    @property
    def cache_status(self) -> str:
        return self.headers.get("Cache-Status", "")

    @property
    def text(self) -> str:
        return self.body.decode()


async def call(
    url: str,
    method: str = "GET",
    *,
    headers: dict[str, str] | None = None,
    data: bytes | str | None = None,
    session: aiohttp.ClientSession | None = None,
    local_addr: tuple[str, int] | None = None,
    skip: tuple[str, ...] = (),
) -> Answer:
    """One request on a fresh connection."""
    if session is None:
        connector = aiohttp.TCPConnector(force_close=True, local_addr=local_addr)
        async with aiohttp.ClientSession(connector=connector) as own:
            return await call(url, method, headers=headers, data=data, session=own, skip=skip)
    async with session.request(
        method, url, headers=headers, data=data, allow_redirects=False, skip_auto_headers=skip
    ) as resp:
        return Answer(resp.status, resp.headers, await resp.read())


async def admin(gw: GatewayProcess, method: str, path: str, *, token: str | None = ADMIN_TOKEN, body: Any = None,
                raw: bytes | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as client:
        async with client.request(method, gw.admin_url + path, headers=headers, data=data) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


async def metrics(gw: GatewayProcess) -> str:
    status, text = await admin(gw, "GET", "/metrics")
    assert status == 200
    return text


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


# -- the shared gateway -------------------------------------------------------------------


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.close()


async def _raw_origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A hand-written origin for answers aiohttp would never send: cut off mid-body."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1]
        RAW_SEEN.append(target)
        if target.startswith(b"/raw/cut-length"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: text/plain\r\n\r\n" + b"a" * 500)
            await writer.drain()
            return  # closes: 500 of the 1000 announced bytes
        if target.startswith(b"/raw/cut-chunked"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"b" * 500 + b"\r\n")
            await writer.drain()
            return  # closes before the last chunk
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nwhole")
        await writer.drain()


RAW_SEEN: list[bytes] = []


def main_config(origin_url: str, fragile_url: str, raw_url: str) -> dict[str, Any]:
    def upstream(url: str) -> dict[str, Any]:
        return {"targets": [url], "passive": False, "retries": 0, "timeouts": {"connect": "1s", "response": "10s"}}

    def route(name: str, path: str, cache: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
        r: dict[str, Any] = {"name": name, "match": {"path": path}, "upstream": more.pop("upstream", "origin"), **more}
        if cache is not None:
            r["cache"] = cache
        return r

    return {
        "server": {"trusted_proxies": ["127.0.0.2/32"], "shutdown_timeout": "2s"},
        "admin": {"token": ADMIN_TOKEN},
        "auth": {
            "jwt": {
                "algorithms": ["HS256"],
                "secret": HS_SECRET,
                "subject_claim": "user_id",
                "forward_claims": {"user_id": "X-User-Id"},
            }
        },
        "cache": {"max_memory": "4MiB", "max_entry_size": "32KiB"},
        "upstreams": {"origin": upstream(origin_url), "fragile": upstream(fragile_url), "raw": upstream(raw_url)},
        "routes": [
            route("plain", "/plain", None),
            route("c", "/c", {"ttl": "30s", "vary": ["Accept"], "ignore_params": ["utm_source", "fbclid"]},
                  auth="optional"),
            route("user", "/u", {"ttl": "30s", "per_user": True}, auth="optional"),
            route("req", "/req", {"ttl": "30s"}, auth="required"),
            route("limited", "/limited", {"ttl": "30s"}, throttle={"anonymous": "1/minute"}),
            {**route("inv-read", "/inv", {"ttl": "30s"}), "match": {"path": "/inv", "methods": ["GET", "HEAD"]}},
            {**route("inv-write", "/inv", None),
             "match": {"path": "/inv", "methods": ["POST", "PUT", "PATCH", "DELETE"]}},
            route("short", "/short", {"ttl": "1s", "stale_if_error": "2s"}),
            route("reval", "/reval", {"ttl": "2s"}),
            route("swr", "/swr", {"ttl": "2s", "stale_while_revalidate": "5s"}),
            route("dead", "/dead", {"ttl": "1s", "stale_if_error": "2s"}, upstream="fragile"),
            route("raw", "/raw", {"ttl": "30s"}, upstream="raw"),
            route("m", "/m", {"ttl": "2s", "stale_while_revalidate": "5s"}),
        ],
    }


@pytest.fixture(scope="module")
def fragile(origin: Origin) -> str:
    return origin.serve_app()


@pytest.fixture(scope="module")
def gw(origin: Origin, fragile: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    raw = origin.serve_raw(_raw_origin)
    gateway = GatewayProcess(main_config(origin.url, fragile, raw), tmp_path_factory.mktemp("cache-gw"))
    gateway.start()
    yield gateway
    code = gateway.stop()
    assert code == 0, f"gateway exited with {code}:\n{gateway.log()}"


# -- MISS, HIT, Age, Cache-Status, X-Cache on every answer ---------------------------------


async def test_miss_then_hit_with_age_and_cache_status(gw, origin) -> None:
    first = await call(gw.url + "/c/basic")
    assert (first.status, first.text, first.x_cache) == (200, "/c/basic n=1", "MISS")
    assert first.cache_status == "gateway; fwd=miss; stored"
    assert "Age" not in first.headers

    second = await call(gw.url + "/c/basic")
    assert (second.status, second.text, second.x_cache) == (200, "/c/basic n=1", "HIT")
    assert second.cache_status.startswith("gateway; hit; ttl=")
    assert 0 <= int(second.headers["Age"]) <= 1
    assert 28 <= int(second.cache_status.rsplit("ttl=", 1)[1]) <= 30
    assert second.headers["Content-Length"] == str(len(b"/c/basic n=1"))
    assert second.headers["Content-Type"].startswith("text/plain")
    assert "X-Request-ID" in second.headers and second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
    assert origin.count("/c/basic") == 1

    await asyncio.sleep(1.05)
    third = await call(gw.url + "/c/basic")
    assert third.x_cache == "HIT" and int(third.headers["Age"]) >= 1
    assert origin.count("/c/basic") == 1


async def test_age_counts_what_the_origin_said_it_already_was(gw, origin) -> None:
    # RFC 9111 §4.2.3: an upstream Age is part of the entry's age ...
    origin.on("/c/aged", lambda request, n: _async(reply(body="aged", headers={"Age": "7"})))
    await call(gw.url + "/c/aged")
    hit = await call(gw.url + "/c/aged")
    assert hit.x_cache == "HIT"
    assert 7 <= int(hit.headers["Age"]) <= 9
    assert hit.headers.getall("Age") == [hit.headers["Age"]]  # one Age, the gateway's
    # ... and so shortens what is left of the route's ttl.
    assert 20 <= int(hit.cache_status.rsplit("ttl=", 1)[1]) <= 23


async def test_every_answer_of_a_cached_route_says_x_cache_and_uncached_routes_never(gw, origin) -> None:
    # Refused before the cache stage: BYPASS.
    refused = await call(gw.url + "/req/a")
    assert (refused.status, refused.x_cache) == (401, "BYPASS")
    assert refused.cache_status.startswith("gateway; fwd=bypass")
    forged = await call(gw.url + "/c/refused", headers=bearer("alice", secret="x" * 43))
    assert (forged.status, forged.x_cache) == (401, "BYPASS")

    allowed = await call(gw.url + "/limited/a")
    assert (allowed.status, allowed.x_cache) == (200, "MISS")
    throttled = await call(gw.url + "/limited/a")
    assert (throttled.status, throttled.x_cache) == (429, "BYPASS")
    assert "Cache-Status" in throttled.headers

    # A verified caller on a shared route: BYPASS, answered by the origin.
    authorised = await call(gw.url + "/req/a", headers=bearer("alice"))
    assert (authorised.status, authorised.x_cache) == (200, "BYPASS")

    for answer in (await call(gw.url + "/plain/a"), await call(gw.url + "/plain/a"), await call(gw.url + "/nowhere")):
        assert "X-Cache" not in answer.headers and "Cache-Status" not in answer.headers
    assert origin.count("/plain/a") == 2


# -- the key: what can change an answer -----------------------------------------------------


async def test_cpdos_an_error_caused_by_an_odd_client_header_is_not_stored(gw, origin) -> None:
    async def picky(request: web.Request, n: int) -> web.Response:
        if "X-Odd" in request.headers:
            return reply(400, "bad header")
        return reply(body="the real page")

    origin.on("/c/cpdos", picky)
    poisoned = await call(gw.url + "/c/cpdos", headers={"X-Odd": "1"})
    assert (poisoned.status, poisoned.x_cache) == (400, "MISS")
    clean = await call(gw.url + "/c/cpdos")
    assert (clean.status, clean.text, clean.x_cache) == (200, "the real page", "MISS")
    assert (await call(gw.url + "/c/cpdos")).x_cache == "HIT"

    # HTTP header oversize: the origin's parser refuses a header the gateway accepts.
    big = await call(gw.url + "/c/cpdos-hho", headers={"X-Big": "a" * 10_000})
    assert big.status >= 400 and big.x_cache == "MISS"
    clean = await call(gw.url + "/c/cpdos-hho")
    assert (clean.status, clean.x_cache) == (200, "MISS")
    assert origin.count("/c/cpdos-hho") == 1  # the oversized one never reached a handler


async def test_cpdos_a_path_override_header_cannot_poison_an_entry(gw, origin) -> None:
    async def rewriting(request: web.Request, n: int) -> web.Response:
        if request.headers.get("X-Original-URL", "/c/override") != "/c/override":
            return reply(404, "no such page")
        return reply(body="the real page")

    origin.on("/c/override", rewriting)
    await call(gw.url + "/c/override", headers={"X-Original-URL": "/nothing-here"})
    clean = await call(gw.url + "/c/override")
    assert (clean.status, clean.text) == (200, "the real page")


def _echo_forwarded(request: web.Request, n: int) -> Awaitable[web.Response]:
    links = f"host={request.headers.get('X-Forwarded-Host')} proto={request.headers.get('X-Forwarded-Proto')} n={n}"
    return _async(reply(body=links))


async def test_x_forwarded_host_from_an_untrusted_client_cannot_select_or_poison_an_entry(gw, origin) -> None:
    origin.on("/c/xfh", _echo_forwarded)
    host = f"127.0.0.1:{gw.port}"
    poisoner = await call(gw.url + "/c/xfh", headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert poisoner.x_cache == "MISS"
    assert poisoner.text == f"host={host} proto=http n=1"  # stripped: the origin never saw it
    victim = await call(gw.url + "/c/xfh")
    assert (victim.x_cache, victim.text) == ("HIT", f"host={host} proto=http n=1")
    other = await call(gw.url + "/c/xfh", headers={"X-Forwarded-Host": "other.example", "X_Forwarded_Host": "x.example"})
    assert (other.x_cache, other.text) == ("HIT", f"host={host} proto=http n=1")
    assert origin.count("/c/xfh") == 1


async def test_x_forwarded_host_from_a_trusted_proxy_is_part_of_the_key(gw, origin) -> None:
    origin.on("/c/xfh-trusted", _echo_forwarded)
    proxy = ("127.0.0.2", 0)  # the gateway trusts 127.0.0.2/32

    async def via(forwarded_host: str | None, proto: str = "https") -> Answer:
        headers = {"X-Forwarded-Proto": proto}
        if forwarded_host:
            headers["X-Forwarded-Host"] = forwarded_host
        return await call(gw.url + "/c/xfh-trusted", headers=headers, local_addr=proxy)

    a = await via("a.example")
    assert (a.x_cache, a.text) == ("MISS", "host=a.example proto=https n=1")
    b = await via("b.example")
    assert (b.x_cache, b.text) == ("MISS", "host=b.example proto=https n=2")
    a_http = await via("a.example", proto="http")
    assert (a_http.x_cache, a_http.text) == ("MISS", "host=a.example proto=http n=3")
    assert ((await via("A.EXAMPLE")).x_cache, (await via("a.example")).text) == ("HIT", "host=a.example proto=https n=1")
    assert (await via("b.example")).text == "host=b.example proto=https n=2"
    # A direct client: its own Host, whatever it claims.
    direct = await call(gw.url + "/c/xfh-trusted", headers={"X-Forwarded-Host": "a.example"})
    assert (direct.x_cache, direct.text) == ("MISS", f"host=127.0.0.1:{gw.port} proto=http n=4")


def _whoami(request: web.Request, n: int) -> Awaitable[web.Response]:
    return _async(reply(body=f"user={request.headers.get('X-User-Id', 'anonymous')} n={n}"))


async def test_a_request_with_authorization_never_meets_a_shared_entry(gw, origin) -> None:
    origin.on("/c/auth", _whoami)
    # First with a token: answered by the origin, nothing stored.
    alice = await call(gw.url + "/c/auth", headers=bearer("alice"))
    assert (alice.x_cache, alice.text) == ("BYPASS", "user=alice n=1")
    assert alice.cache_status == "gateway; fwd=bypass; detail=authorization"
    anonymous = await call(gw.url + "/c/auth")
    assert (anonymous.x_cache, anonymous.text) == ("MISS", "user=anonymous n=2")
    # Then an anonymous entry exists: a token still never gets it.
    again = await call(gw.url + "/c/auth", headers=bearer("alice"))
    assert (again.x_cache, again.text) == ("BYPASS", "user=alice n=3")
    assert (await call(gw.url + "/c/auth")).text == "user=anonymous n=2"
    # Neither does a token on a route with auth: none (nothing verified it).
    assert (await call(gw.url + "/c/auth", headers={"Authorization": "Basic YTpi"})).x_cache == "BYPASS"


async def test_per_user_entries_are_never_shared_between_users(gw, origin) -> None:
    origin.on("/u/mine", _whoami)
    answers = {}
    for who in ("alice", "bob", None, "alice", "bob", None, "alice"):
        answer = await call(gw.url + "/u/mine", headers=bearer(who) if who else None)
        answers.setdefault(who, []).append((answer.x_cache, answer.text))
    assert answers["alice"] == [("MISS", "user=alice n=1"), ("HIT", "user=alice n=1"), ("HIT", "user=alice n=1")]
    assert answers["bob"] == [("MISS", "user=bob n=2"), ("HIT", "user=bob n=2")]
    assert answers[None] == [("MISS", "user=anonymous n=3"), ("HIT", "user=anonymous n=3")]
    # An identity header from the client is stripped, so it cannot select anyone's entry.
    for forged_identity in ({"X-User-Id": "alice"}, {"X_User_Id": "bob"}):
        assert (await call(gw.url + "/u/mine", headers=forged_identity)).text == "user=anonymous n=3"
    # A fresh token for the same subject is the same variant (keyed on the subject, not the token).
    await asyncio.sleep(1.01)  # a different iat, so a different token
    assert (await call(gw.url + "/u/mine", headers=bearer("alice"))).text == "user=alice n=1"
    # An invalid token is refused, never keyed.
    forged = await call(gw.url + "/u/mine", headers=bearer("alice", secret="y" * 43))
    assert (forged.status, forged.x_cache) == (401, "BYPASS")
    assert origin.count("/u/mine") == 3


async def test_vary_keyed_makes_variants_and_unkeyed_vary_is_never_stored(gw, origin) -> None:
    async def negotiated(request: web.Request, n: int) -> web.Response:
        return reply(body=f"{request.headers.get('Accept', 'none')} n={n}", headers={"Vary": "Accept"})

    origin.on("/c/vary", negotiated)
    json_ = {"Accept": "application/json"}
    html = {"Accept": "text/html"}
    assert (await call(gw.url + "/c/vary", headers=json_)).text == "application/json n=1"
    assert (await call(gw.url + "/c/vary", headers=html)).text == "text/html n=2"
    hit = await call(gw.url + "/c/vary", headers=json_)
    assert (hit.x_cache, hit.text) == ("HIT", "application/json n=1")
    assert hit.headers["Vary"] == "Accept"
    assert (await call(gw.url + "/c/vary", headers=html)).text == "text/html n=2"
    # An absent Accept is its own variant, not the empty one's.
    absent = await call(gw.url + "/c/vary", skip=("Accept",))
    assert (absent.x_cache, absent.text) == ("MISS", "none n=3")
    empty = await call(gw.url + "/c/vary", headers={"Accept": ""})
    assert empty.x_cache == "MISS"

    async def by_language(request: web.Request, n: int) -> web.Response:
        return reply(body=f"lang n={n}", headers={"Vary": "Accept-Language"})

    origin.on("/c/vary-unkeyed", by_language)
    for n in (1, 2, 3):
        answer = await call(gw.url + "/c/vary-unkeyed", headers={"Accept-Language": "fr"})
        assert (answer.x_cache, answer.text) == ("MISS", f"lang n={n}")
        assert answer.cache_status == "gateway; fwd=miss; detail=vary"


@pytest.mark.parametrize(
    ("headers", "data", "reason"),
    [
        ({"Cookie": "session=abc"}, None, "cookie"),
        ({"Range": "bytes=0-3"}, None, "range"),
        ({"If-Match": '"x"'}, None, "if-match"),
        ({"Content-Type": "text/plain"}, b"a body", "body"),
    ],
)
async def test_requests_the_key_cannot_describe_bypass(gw, origin, headers, data, reason) -> None:
    path = f"/c/bypass-{reason}"
    for n in (1, 2):
        answer = await call(gw.url + path, headers=headers, data=data)
        assert (answer.x_cache, answer.cache_status) == ("BYPASS", f"gateway; fwd=bypass; detail={reason}")
        assert answer.text.endswith(f"n={n}")
    # Nothing was stored by them.
    assert (await call(gw.url + path)).x_cache == "MISS"


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def _head_then_close(gw: GatewayProcess, path: str) -> tuple[bytes, bytes]:
    """A HEAD and a pipelined GET on one connection: whatever follows the HEAD's head
    must be the next response, never a body."""
    host = f"127.0.0.1:{gw.port}".encode()
    out = await _raw(
        gw.port,
        # Accept as aiohttp's client sends it: the route varies on Accept.
        b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\nAccept: */*\r\n\r\n"
        b"GET /plain/after-head HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n",
    )
    head, _, rest = out.partition(b"\r\n\r\n")
    return head, rest


async def test_get_then_head_is_answered_from_the_entry(gw, origin) -> None:
    assert (await call(gw.url + "/c/gethead")).x_cache == "MISS"
    head, rest = await _head_then_close(gw, "/c/gethead")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"\r\nX-Cache: HIT" in head
    assert b"\r\nContent-Length: %d" % len(b"/c/gethead n=1") in head
    assert rest.startswith(b"HTTP/1.1 200"), rest[:80]  # no body after the HEAD's head
    assert [s.method for s in origin.requests("/c/gethead")] == ["GET"]


async def test_head_then_get_a_head_miss_stores_nothing(gw, origin) -> None:
    head, rest = await _head_then_close(gw, "/c/headget")
    assert head.startswith(b"HTTP/1.1 200") and b"\r\nX-Cache: MISS" in head
    assert rest.startswith(b"HTTP/1.1 200")
    first = await call(gw.url + "/c/headget")
    assert (first.x_cache, first.text) == ("MISS", "/c/headget n=2")  # not an empty entry from the HEAD
    assert (await call(gw.url + "/c/headget")).text == "/c/headget n=2"
    assert [s.method for s in origin.requests("/c/headget")] == ["HEAD", "GET"]


async def test_query_order_duplicates_and_ignored_params(gw, origin) -> None:
    assert (await call(gw.url + "/c/q?a=1&b=2")).x_cache == "MISS"
    hit = await call(gw.url + "/c/q?b=2&a=1")
    assert (hit.x_cache, hit.text) == ("HIT", "/c/q?a=1&b=2 n=1")
    # Duplicates keep their order: backends differ on which one wins.
    assert (await call(gw.url + "/c/q?a=1&a=2")).x_cache == "MISS"
    assert (await call(gw.url + "/c/q?a=2&a=1")).x_cache == "MISS"
    assert (await call(gw.url + "/c/q?a=2&a=1")).x_cache == "HIT"
    # Ignored parameters are not in the key (the origin still receives them).
    first = await call(gw.url + "/c/q?page=3&utm_source=mail")
    assert first.x_cache == "MISS"
    for query in ("utm_source=ads&page=3", "page=3", "fbclid=1&page=3&utm_source=x", "page=3&utm%5Fsource=y"):
        answer = await call(gw.url + "/c/q?" + query)
        assert (answer.x_cache, answer.text) == ("HIT", first.text), query
    assert (await call(gw.url + "/c/q?page=4&utm_source=mail")).x_cache == "MISS"
    assert origin.requests("/c/q")[-2].path_qs == "/c/q?page=3&utm_source=mail"


# -- what is stored ---------------------------------------------------------------------------


async def test_every_non_storable_status_is_a_miss_every_time(gw, origin) -> None:
    for status in (201, 202, 206, 302, 303, 307, 400, 401, 403, 405, 409, 429, 500, 502, 503):
        path = f"/c/status/{status}"
        origin.on(path, lambda request, n, status=status: _async(reply(status, f"{status} n={n}")))
        for n in (1, 2):
            answer = await call(gw.url + path)
            assert (answer.status, answer.x_cache) == (status, "MISS"), (status, n)
            assert answer.text == f"{status} n={n}"
            assert answer.cache_status == f"gateway; fwd=miss; detail=status {status}"


async def test_every_storable_status_is_stored(gw, origin) -> None:
    for status in (200, 203, 204, 301, 404, 410):
        path = f"/c/stored/{status}"
        headers = {"Location": "/elsewhere"} if status == 301 else None
        origin.on(path, lambda request, n, status=status, headers=headers: _async(reply(status, f"n={n}", headers)))
        assert (await call(gw.url + path)).x_cache == "MISS"
        hit = await call(gw.url + path)
        assert (hit.status, hit.x_cache) == (status, "HIT"), status
        assert hit.body == (b"" if status == 204 else b"n=1")
        if status == 204:
            assert "Content-Length" not in hit.headers
        if status == 301:
            assert hit.headers["Location"] == "/elsewhere"


@pytest.mark.parametrize(
    ("name", "headers", "detail"),
    [
        ("no-store", {"Cache-Control": "no-store"}, "no-store"),
        ("no-cache", {"Cache-Control": "no-cache"}, "no-cache"),
        ("private", {"Cache-Control": "private, max-age=60"}, "private"),
        ("set-cookie", {"Set-Cookie": "session=secret"}, "set-cookie"),
        ("vary-star", {"Vary": "*"}, "vary"),
        ("max-age-0", {"Cache-Control": "max-age=0"}, "expired"),
    ],
)
async def test_every_forbidding_directive_is_a_miss_every_time(gw, origin, name, headers, detail) -> None:
    path = f"/c/directive/{name}"
    origin.on(path, lambda request, n: _async(reply(body=f"n={n}", headers=headers)))
    for n in (1, 2, 3):
        answer = await call(gw.url + path)
        assert (answer.x_cache, answer.text) == ("MISS", f"n={n}")
        assert answer.cache_status == f"gateway; fwd=miss; detail={detail}"
    if name == "set-cookie":
        assert answer.headers["Set-Cookie"] == "session=secret"  # relayed, just never stored


async def test_origin_s_maxage_and_max_age_shorten_the_route_ttl(gw, origin) -> None:
    lifetimes = {
        "/c/ttl/max-age": "max-age=2",
        "/c/ttl/s-maxage": "s-maxage=2, max-age=600",
        "/c/ttl/longer": "max-age=600",  # never lengthens the route's 30 s
    }
    for path, cache_control in lifetimes.items():
        origin.on(path, lambda request, n, cc=cache_control: _async(reply(body=f"n={n}", headers={"Cache-Control": cc})))
        assert (await call(gw.url + path)).x_cache == "MISS"
        hit = await call(gw.url + path)
        assert hit.x_cache == "HIT"
        ttl = int(hit.cache_status.rsplit("ttl=", 1)[1])
        assert ttl <= (2 if path != "/c/ttl/longer" else 30)
    await asyncio.sleep(2.1)
    assert (await call(gw.url + "/c/ttl/max-age")).x_cache == "MISS"
    assert (await call(gw.url + "/c/ttl/s-maxage")).x_cache == "MISS"
    assert (await call(gw.url + "/c/ttl/longer")).x_cache == "HIT"


async def test_a_response_over_max_entry_size_streams_through_and_is_not_stored(gw, origin) -> None:
    big = bytes(range(256)) * 400  # 100 KiB, over the 32 KiB max_entry_size
    origin.on("/c/big", lambda request, n: _async(reply(body=big)))
    for _ in (1, 2):
        answer = await call(gw.url + "/c/big")
        assert (answer.status, answer.x_cache, answer.body) == (200, "MISS", big)
        assert "stored" not in answer.cache_status
    assert origin.count("/c/big") == 2

    # Streamed, not buffered to decide: the client has the first part while the
    # origin still holds the rest back.
    opened = threading.Event()

    async def slow_stream(request: web.Request, n: int) -> web.StreamResponse:
        out = web.StreamResponse()
        out.content_length = len(big)
        await out.prepare(request)
        await out.write(big[:40_000])
        if n == 1:
            await gate(opened)
        await out.write(big[40_000:])
        return out

    origin.on("/c/big-stream", slow_stream)
    async with aiohttp.ClientSession() as client:
        async with client.get(gw.url + "/c/big-stream") as resp:
            first = await resp.content.readexactly(40_000)
            opened.set()
            rest = await resp.read()
    assert first + rest == big
    assert (await call(gw.url + "/c/big-stream")).x_cache == "MISS"

    # A small body without a Content-Length (chunked) is stored.
    async def chunked(request: web.Request, n: int) -> web.StreamResponse:
        out = web.StreamResponse()
        out.enable_chunked_encoding()
        await out.prepare(request)
        await out.write(b"part one, ")
        await out.write(f"part two n={n}".encode())
        return out

    origin.on("/c/chunked", chunked)
    assert (await call(gw.url + "/c/chunked")).x_cache == "MISS"
    hit = await call(gw.url + "/c/chunked")
    assert (hit.x_cache, hit.text) == ("HIT", "part one, part two n=1")


@pytest.mark.parametrize("path", ["/raw/cut-length", "/raw/cut-chunked"])
async def test_a_truncated_upstream_response_is_never_stored(gw, path) -> None:
    for attempt in (1, 2):
        with pytest.raises(aiohttp.ClientPayloadError):
            await call(gw.url + path)
        assert RAW_SEEN.count(path.encode()) == attempt
    # The same origin's whole answers are stored.
    whole = await call(gw.url + path.replace("/cut-", "/whole-"))
    assert (whole.text, whole.x_cache) == ("whole", "MISS")
    assert (await call(gw.url + path.replace("/cut-", "/whole-"))).x_cache == "HIT"


# -- conditional requests -------------------------------------------------------------------


def _tagged(tag: str, last_modified: str = "Wed, 01 Jan 2025 00:00:00 GMT") -> Handler:
    async def handler(request: web.Request, n: int) -> web.Response:
        if request.headers.get("If-None-Match") == tag:
            return reply(304, headers={"ETag": tag})
        return reply(body=f"tagged n={n}", headers={"ETag": tag, "Last-Modified": last_modified})

    return handler


async def test_a_matching_validator_on_a_fresh_entry_is_a_304_from_the_cache(gw, origin) -> None:
    origin.on("/c/etag", _tagged('"v1"'))
    assert (await call(gw.url + "/c/etag")).x_cache == "MISS"
    for validators in (
        {"If-None-Match": '"v1"'},
        {"If-None-Match": 'W/"v1"'},  # weak comparison
        {"If-None-Match": '"v0", "v1"'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": "Wed, 01 Jan 2025 00:00:00 GMT"},
        {"If-Modified-Since": "Thu, 02 Jan 2025 00:00:00 GMT"},
    ):
        answer = await call(gw.url + "/c/etag", headers=validators)
        assert (answer.status, answer.x_cache, answer.body) == (304, "HIT", b""), validators
        assert answer.headers["ETag"] == '"v1"'
    for validators in (
        {"If-None-Match": '"v2"'},
        {"If-Modified-Since": "Tue, 31 Dec 2024 00:00:00 GMT"},
        {"If-None-Match": '"v2"', "If-Modified-Since": "Thu, 02 Jan 2025 00:00:00 GMT"},  # INM wins
        {},
    ):
        answer = await call(gw.url + "/c/etag", headers=validators)
        assert (answer.status, answer.x_cache, answer.text) == (200, "HIT", "tagged n=1"), validators
    assert origin.count("/c/etag") == 1


async def test_an_error_entry_never_answers_a_precondition_with_304(gw, origin) -> None:
    # RFC 9110 §13.2.1: preconditions are ignored unless the answer would be 2xx.
    # Django's ConditionalGetMiddleware puts an ETag on its 404s too.
    origin.on("/c/etag-404", lambda request, n: _async(reply(404, "gone", {"ETag": '"e404"'})))
    await call(gw.url + "/c/etag-404")
    answer = await call(gw.url + "/c/etag-404", headers={"If-None-Match": '"e404"'})
    assert (answer.status, answer.x_cache, answer.text) == (404, "HIT", "gone")


async def test_an_expired_entry_is_revalidated_and_a_304_freshens_it(gw, origin) -> None:
    origin.on("/reval/a", _tagged('"r1"'))
    origin.on("/reval/b", _tagged('"r2"'))
    first = await call(gw.url + "/reval/a")
    assert (first.x_cache, first.text) == ("MISS", "tagged n=1")
    await call(gw.url + "/reval/b")
    await asyncio.sleep(2.1)
    # An unconditional client: the gateway asks conditionally, the client gets the body.
    again = await call(gw.url + "/reval/a")
    assert (again.status, again.text) == (200, "tagged n=1")
    assert again.x_cache == "HIT" and "fwd-status=304" in again.cache_status
    conditional = origin.requests("/reval/a")[1]
    assert conditional.headers.get("If-None-Match") == '"r1"'
    assert origin.count("/reval/a") == 2
    # Fresh again: served without asking.
    assert (await call(gw.url + "/reval/a")).x_cache == "HIT"
    assert origin.count("/reval/a") == 2

    # A conditional client meeting an expired entry: the gateway's validators go up,
    # the client's question is answered from the freshened entry.
    answer = await call(gw.url + "/reval/b", headers={"If-None-Match": '"r2"'})
    assert (answer.status, answer.body) == (304, b"")
    assert origin.requests("/reval/b")[1].headers.get("If-None-Match") == '"r2"'


# -- invalidation ---------------------------------------------------------------------------


async def _cached(gw: GatewayProcess, *paths: str) -> None:
    for path in paths:
        await call(gw.url + path)
        assert (await call(gw.url + path)).x_cache == "HIT", path


async def test_a_successful_write_invalidates_every_query_variant(gw, origin) -> None:
    before = metric(await metrics(gw), "gateway_cache_invalidations_total", reason="write")
    variants = ("/inv/a/items", "/inv/a/items?page=1", "/inv/a/items?page=2")
    await _cached(gw, *variants, "/inv/a/other")
    origin.on("/inv/a/items", lambda request, n: _async(reply(201 if request.method == "POST" else 200, f"n={n}")))
    posted = await call(gw.url + "/inv/a/items", "POST", data=b"{}")  # through the uncached write route
    assert posted.status == 201 and "X-Cache" not in posted.headers
    for path in variants:
        answer = await call(gw.url + path)
        assert answer.x_cache == "MISS", path
    assert (await call(gw.url + "/inv/a/other")).x_cache == "HIT"
    after = metric(await metrics(gw), "gateway_cache_invalidations_total", reason="write")
    assert after == before + 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_write_to_an_item_invalidates_it_and_its_parent_collection(gw, method) -> None:
    base = f"/inv/{method.lower()}"
    await _cached(gw, f"{base}/items", f"{base}/items?page=1", f"{base}/items/3", f"{base}/items/4")
    assert (await call(gw.url + f"{base}/items/3", method, data=b"{}")).status == 200
    for path in (f"{base}/items", f"{base}/items?page=1", f"{base}/items/3"):
        assert (await call(gw.url + path)).x_cache == "MISS", path
    assert (await call(gw.url + f"{base}/items/4")).x_cache == "HIT"  # a sibling is untouched


async def test_a_write_through_the_cached_route_itself_invalidates(gw) -> None:
    await _cached(gw, "/c/w/items", "/c/w/items?page=2")
    assert (await call(gw.url + "/c/w/items", "POST", data=b"{}")).x_cache == "BYPASS"
    assert (await call(gw.url + "/c/w/items")).x_cache == "MISS"
    assert (await call(gw.url + "/c/w/items?page=2")).x_cache == "MISS"


async def test_location_and_content_location_of_a_write_are_invalidated_when_same_origin(gw, origin) -> None:
    host = f"127.0.0.1:{gw.port}"
    await _cached(gw, "/inv/loc/created", "/inv/loc/described", "/inv/loc/far")
    origin.on("/inv/loc/make", lambda request, n: _async(reply(201, "made", {
        "Location": "/inv/loc/created",
        "Content-Location": f"http://{host}/inv/loc/described",
    })))
    origin.on("/inv/loc/away", lambda request, n: _async(reply(201, "made", {
        "Location": "http://evil.example/inv/loc/far",
    })))
    assert (await call(gw.url + "/inv/loc/make", "POST", data=b"x")).status == 201
    assert (await call(gw.url + "/inv/loc/created")).x_cache == "MISS"
    assert (await call(gw.url + "/inv/loc/described")).x_cache == "MISS"
    assert (await call(gw.url + "/inv/loc/away", "POST", data=b"x")).status == 201
    assert (await call(gw.url + "/inv/loc/far")).x_cache == "HIT"  # another origin's: not ours to drop


async def test_a_location_on_the_public_host_a_trusted_proxy_forwards_is_same_origin(gw, origin) -> None:
    # Behind a trusted proxy the entries are keyed on X-Forwarded-Host, and a backend
    # writes its Location with that public host: it names our entries.
    proxy = {"local_addr": ("127.0.0.2", 0), "headers": {"X-Forwarded-Host": "pub.example", "X-Forwarded-Proto": "https"}}
    await call(gw.url + "/inv/pub/target", **proxy)
    assert (await call(gw.url + "/inv/pub/target", **proxy)).x_cache == "HIT"
    origin.on("/inv/pub/make", lambda request, n: _async(reply(201, "made", {
        "Location": "https://pub.example/inv/pub/target",
    })))
    assert (await call(gw.url + "/inv/pub/make", "POST", data=b"x", **proxy)).status == 201
    assert (await call(gw.url + "/inv/pub/target", **proxy)).x_cache == "MISS"


async def test_a_failed_write_invalidates_nothing(gw, origin) -> None:
    before = metric(await metrics(gw), "gateway_cache_invalidations_total", reason="write")
    await _cached(gw, "/inv/fail/items", "/inv/fail/items/3")
    for status in (400, 403, 404, 409, 500):
        origin.on("/inv/fail/items/3", lambda request, n, s=status: _async(
            reply(s, "no") if request.method != "GET" else reply(body=f"n={n}")))
        assert (await call(gw.url + "/inv/fail/items/3", "DELETE")).status == status
        assert (await call(gw.url + "/inv/fail/items/3")).x_cache == "HIT", status
        assert (await call(gw.url + "/inv/fail/items")).x_cache == "HIT", status
    assert metric(await metrics(gw), "gateway_cache_invalidations_total", reason="write") == before


# -- coalescing and stale ------------------------------------------------------------------


async def test_concurrent_misses_make_one_upstream_request(gw, origin) -> None:
    async def slow(request: web.Request, n: int) -> web.Response:
        await asyncio.sleep(0.5)
        return reply(body=f"slow n={n}")

    origin.on("/c/slow", slow)
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        answers = await asyncio.gather(*(call(gw.url + "/c/slow", session=client) for _ in range(20)))
    assert origin.count("/c/slow") == 1
    assert [a.text for a in answers] == ["slow n=1"] * 20
    statuses = sorted(a.cache_status for a in answers)
    assert statuses.count("gateway; fwd=miss; collapsed") == 19
    assert statuses.count("gateway; fwd=miss; stored") == 1
    assert (await call(gw.url + "/c/slow")).x_cache == "HIT"


def _slow_tagged(tag: str) -> Handler:
    async def handler(request: web.Request, n: int) -> web.Response:
        await asyncio.sleep(0.3)
        if request.headers.get("If-None-Match") == tag:
            return reply(304, headers={"ETag": tag})
        return reply(body=f"n={n}", headers={"ETag": tag})

    return handler


async def _conditional_leader_then_followers(gw: GatewayProcess, path: str) -> tuple[Answer, list[Answer]]:
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        leader = asyncio.create_task(call(gw.url + path, headers={"If-None-Match": '"t"'}, session=client))
        await asyncio.sleep(0.1)  # the leader's fill is in flight
        followers = await asyncio.gather(*(call(gw.url + path, session=client) for _ in range(5)))
        return await leader, followers


async def test_a_conditional_leader_never_gives_its_304_to_unconditional_followers(gw, origin) -> None:
    origin.on("/c/cond-lead", _slow_tagged('"t"'))
    leader, followers = await _conditional_leader_then_followers(gw, "/c/cond-lead")
    assert (leader.status, leader.body) == (304, b"")
    for follower in followers:
        assert follower.status == 200 and follower.text.startswith("n=")


async def test_a_conditional_leader_still_coalesces_its_followers(gw, origin) -> None:
    origin.on("/c/cond-lead-count", _slow_tagged('"t"'))
    await _conditional_leader_then_followers(gw, "/c/cond-lead-count")
    # One request for the leader, at most one more for all the followers together.
    assert origin.count("/c/cond-lead-count") <= 2


def _good_then(status: int) -> Handler:
    async def handler(request: web.Request, n: int) -> web.Response:
        return reply(body="good") if n == 1 else reply(status, "origin trouble")

    return handler


async def test_stale_if_error_on_an_upstream_503_then_the_error_past_the_window(gw, origin) -> None:
    for status in (500, 502, 503, 504):
        origin.on(f"/short/sie-{status}", _good_then(status))
    # must-revalidate: never served stale, even inside the route's stale_if_error.
    origin.on("/short/mr", lambda request, n: _async(
        reply(body="strict", headers={"Cache-Control": "max-age=5, must-revalidate"}) if n == 1
        else reply(503, "origin trouble")))
    stored_at = time.monotonic()
    for status in (500, 502, 503, 504):
        assert (await call(gw.url + f"/short/sie-{status}")).x_cache == "MISS"
    assert (await call(gw.url + "/short/mr")).x_cache == "MISS"
    await asyncio.sleep(1.1)
    for status in (500, 502, 503, 504):
        stale = await call(gw.url + f"/short/sie-{status}")
        assert (stale.status, stale.x_cache, stale.text) == (200, "STALE", "good"), status
        assert f"fwd-status={status}" in stale.cache_status
        assert origin.count(f"/short/sie-{status}") == 2
    strict = await call(gw.url + "/short/mr")
    assert (strict.status, strict.x_cache) == (503, "MISS")
    await asyncio.sleep(max(0.0, stored_at + 3.1 - time.monotonic()))  # ttl 1 s + stale_if_error 2 s
    late = await call(gw.url + "/short/sie-503")
    assert (late.status, late.x_cache, late.text) == (503, "MISS", "origin trouble")


async def test_stale_if_error_answers_a_head_too(gw, origin) -> None:
    origin.on("/short/head-sie", _good_then(503))
    assert (await call(gw.url + "/short/head-sie")).x_cache == "MISS"
    await asyncio.sleep(1.1)
    head = await call(gw.url + "/short/head-sie", "HEAD")
    assert (head.status, head.x_cache) == (200, "STALE")


async def test_stale_if_error_on_a_dead_upstream(gw, origin, fragile) -> None:
    stored_at = time.monotonic()
    first = await call(gw.url + "/dead/menu")
    assert (first.x_cache, first.text) == ("MISS", "/dead/menu n=1")
    origin.stop_app(fragile)
    await asyncio.sleep(1.1)
    stale = await call(gw.url + "/dead/menu")
    assert (stale.status, stale.x_cache, stale.text) == (200, "STALE", "/dead/menu n=1")
    assert "fwd-status=502" in stale.cache_status
    await asyncio.sleep(max(0.0, stored_at + 3.1 - time.monotonic()))
    late = await call(gw.url + "/dead/menu")
    assert (late.status, late.x_cache) == (502, "MISS")
    assert late.headers["Content-Type"] == "application/problem+json"


async def test_stale_while_revalidate_serves_at_once_and_refreshes_once(gw, origin) -> None:
    opened = threading.Event()

    async def versions(request: web.Request, n: int) -> web.Response:
        if n > 1:
            await gate(opened)  # the refresh waits until the test has seen the stale answers
        return reply(body=f"v{n}")

    origin.on("/swr/menu", versions)
    assert (await call(gw.url + "/swr/menu")).text == "v1"
    await asyncio.sleep(2.1)
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as client:
        answers = await asyncio.gather(*(call(gw.url + "/swr/menu", session=client) for _ in range(10)))
    # Every one answered while the refresh is still held at the origin.
    assert [(a.status, a.x_cache, a.text) for a in answers] == [(200, "STALE", "v1")] * 10
    await wait_until(lambda: origin.count("/swr/menu") == 2, what="the background refresh")
    opened.set()
    seen = []
    deadline = time.monotonic() + 10
    while True:
        answer = await call(gw.url + "/swr/menu")
        seen.append((answer.x_cache, answer.text))
        if answer.text == "v2":
            break
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.02)
    assert seen[-1] == ("HIT", "v2")
    assert set(seen[:-1]) <= {("STALE", "v1")}
    assert origin.count("/swr/menu") == 2  # exactly one refresh


# -- purge ---------------------------------------------------------------------------------


async def test_purge_needs_the_admin_token_and_a_well_formed_body(gw) -> None:
    assert (await admin(gw, "POST", "/cache/purge", token=None, body={"all": True}))[0] == 401
    assert (await admin(gw, "POST", "/cache/purge", token="wrong", body={"all": True}))[0] == 401
    for raw in (b"not json", b"", b"[]", b'{"path": "relative"}', b'{"all": false}', b'{"path": "/a", "all": true}',
                b'{"path": "/a?b=1"}', b'{"prefix": "/../x"}', b"\xff\xfe"):
        status, body = await admin(gw, "POST", "/cache/purge", raw=raw)
        assert status == 400, (raw, body)
        assert body["status"] == 400
    status, _ = await admin(gw, "POST", "/cache/purge", raw=b'{"path": "/' + b"a" * 70_000 + b'"}')
    assert status == 413


async def test_purge_path_prefix_and_all(gw) -> None:
    before = metric(await metrics(gw), "gateway_cache_invalidations_total", reason="purge")
    await _cached(gw, "/c/purge/a?x=1", "/c/purge/a?x=2", "/c/purge/b", "/c/purge/b/1", "/c/purgeother")

    status, body = await admin(gw, "POST", "/cache/purge", body={"path": "/c/purge/a"})
    assert (status, body) == (200, {"purged": 2, "store": "memory"})
    assert (await call(gw.url + "/c/purge/a?x=1")).x_cache == "MISS"
    assert (await call(gw.url + "/c/purge/a?x=2")).x_cache == "MISS"
    assert (await call(gw.url + "/c/purge/b")).x_cache == "HIT"

    status, body = await admin(gw, "POST", "/cache/purge", body={"prefix": "/c/purge/"})
    assert (status, body) == (200, {"purged": 4, "store": "memory"})  # a (2, refilled), b, b/1
    assert (await call(gw.url + "/c/purge/b")).x_cache == "MISS"
    assert (await call(gw.url + "/c/purge/b/1")).x_cache == "MISS"
    assert (await call(gw.url + "/c/purgeother")).x_cache == "HIT"  # segment-aware

    status, body = await admin(gw, "POST", "/cache/purge", body={"all": True})
    assert status == 200 and body["purged"] >= 3
    for path in ("/c/purgeother", "/c/purge/b", "/c/basic"):
        assert (await call(gw.url + path)).x_cache == "MISS", path
    text = await metrics(gw)
    assert metric(text, "gateway_cache_invalidations_total", reason="purge") == before + 3


# -- metrics -------------------------------------------------------------------------------


async def test_cache_request_metrics_count_each_result(gw) -> None:
    def results(text: str) -> dict[str, float]:
        return {r: metric(text, "gateway_cache_requests_total", route="m", result=r)
                for r in ("hit", "miss", "bypass", "stale")}

    before = results(await metrics(gw))
    assert (await call(gw.url + "/m/a")).x_cache == "MISS"
    assert (await call(gw.url + "/m/a")).x_cache == "HIT"
    assert (await call(gw.url + "/m/a", headers={"Cookie": "a=b"})).x_cache == "BYPASS"
    assert (await call(gw.url + "/m/b", "POST", data=b"x")).x_cache == "BYPASS"  # (/m/a's sibling: not invalidated)
    await asyncio.sleep(2.1)
    assert (await call(gw.url + "/m/a")).x_cache == "STALE"
    after = results(await metrics(gw))
    assert {r: after[r] - before[r] for r in after} == {"hit": 1, "miss": 1, "bypass": 2, "stale": 1}
    assert metric(await metrics(gw), "gateway_cache_bytes") > 0


async def test_refusals_marked_bypass_are_counted_as_bypass(gw) -> None:
    before = metric(await metrics(gw), "gateway_cache_requests_total", route="req", result="bypass")
    assert (await call(gw.url + "/req/count")).x_cache == "BYPASS"
    after = metric(await metrics(gw), "gateway_cache_requests_total", route="req", result="bypass")
    assert after == before + 1


# -- other configurations: a tiny LRU, two workers -----------------------------------------------


async def test_the_lru_bound_holds_under_a_flood_of_random_queries(origin, tmp_path) -> None:
    config = {
        "server": {"shutdown_timeout": "2s"},
        "cache": {"max_memory": "64KiB", "max_entry_size": "8KiB"},
        "upstreams": {"origin": {"targets": [origin.url], "passive": False}},
        "routes": [{"name": "flood", "match": {"path": "/"}, "upstream": "origin", "cache": {"ttl": "5m"}}],
    }
    padding = "p" * 1500
    origin.on("/flood", lambda request, n: _async(reply(body=f"{request.path_qs} {padding}")))
    gateway = GatewayProcess(config, tmp_path).start()
    try:
        limit = 64 * 1024
        peak = 0.0
        connector = aiohttp.TCPConnector(limit=16)
        async with aiohttp.ClientSession(connector=connector) as client:
            for batch in range(6):
                queries = [f"/flood?k={batch}-{i}&r={time.monotonic_ns()}" for i in range(60)]
                answers = await asyncio.gather(*(call(gateway.url + q, session=client) for q in queries))
                assert all(a.status == 200 and a.x_cache == "MISS" for a in answers)
                status, text = await admin(gateway, "GET", "/metrics", token=None)
                used = metric(text, "gateway_cache_bytes")
                peak = max(peak, used)
                assert 0 < used <= limit, (batch, used)
            assert peak > limit / 2  # the flood did fill it
            # The newest survived, the oldest were dropped.
            assert (await call(gateway.url + queries[-1], session=client)).x_cache == "HIT"
        status, state = await admin(gateway, "GET", "/status", token=None)
        cache = state["cache"]
        assert cache["bytes"] <= limit and cache["entries"] < 360
    finally:
        assert gateway.stop() == 0, gateway.log()


async def test_two_workers_share_invalidations_and_purges(origin, tmp_path) -> None:
    config = {
        "server": {"shutdown_timeout": "2s"},
        "admin": {"token": ADMIN_TOKEN},
        "upstreams": {"origin": {"targets": [origin.url], "passive": False}},
        "routes": [
            {"name": "read", "match": {"path": "/w2", "methods": ["GET", "HEAD"]}, "upstream": "origin",
             "cache": {"ttl": "5m"}},
            {"name": "write", "match": {"path": "/w2", "methods": ["POST"]}, "upstream": "origin"},
        ],
    }
    gets = lambda: origin.count("/w2/menu", "GET")  # noqa: E731

    async def menu(request: web.Request, n: int) -> web.Response:
        return reply(body=f"n={gets()}")

    origin.on("/w2/menu", menu)
    gateway = GatewayProcess(config, tmp_path, args=["--workers", "2"]).start()
    try:
        def workers_of(answers: list[Answer]) -> set[int]:
            ids = {a.headers["X-Request-ID"] for a in answers}
            return {line["worker"] for line in gateway.access_log() if line["request_id"] in ids}

        async def until_both_workers_hit(target: int, floor: int) -> list[Answer]:
            """GETs on fresh connections (SO_REUSEPORT spreads them) until the origin has
            seen ``target`` GETs and both workers have answered a HIT: each worker fills
            its own entry once. No answer may come from before ``floor``."""
            answers: list[Answer] = []
            deadline = time.monotonic() + 20
            while True:
                answer = await call(gateway.url + "/w2/menu")
                answers.append(answer)
                assert int(answer.text.split("=")[1]) > floor, [(a.x_cache, a.text) for a in answers]
                hits = [a for a in answers if a.x_cache == "HIT"]
                if gets() >= target and len(hits) >= 8:
                    await asyncio.sleep(0.3)  # the access log is flushed every 0.2 s
                    if len(workers_of(hits)) == 2:
                        break
                assert time.monotonic() < deadline, "both workers never answered a HIT"
            assert gets() == target
            return answers

        filled = await until_both_workers_hit(2, 0)
        assert {a.text for a in filled} == {"n=1", "n=2"}

        # A write through one worker: neither worker may answer from its old entry.
        assert (await call(gateway.url + "/w2/menu", "POST", data=b"x")).status == 200
        refilled = await until_both_workers_hit(4, 2)
        assert [a.x_cache for a in refilled].count("MISS") == 2

        # A purge reaches both workers.
        status, body = await admin(gateway, "POST", "/cache/purge", body={"path": "/w2/menu"})
        assert status == 200, body
        assert [(w["status"], w["body"]) for w in body["workers"]] == [(200, {"purged": 1, "store": "memory"})] * 2
        await until_both_workers_hit(6, 4)
        text = await metrics(gateway)
        assert metric(text, "gateway_cache_invalidations_total", reason="write") == 1
    finally:
        assert gateway.stop() == 0, gateway.log()
