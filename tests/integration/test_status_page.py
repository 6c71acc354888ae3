"""The admin status page, rendered by a real headless Chromium against a real gateway.

The gateway runs with ``admin.token`` in front of a stub upstream; the test sends
traffic whose every count it knows (200s, 404s and 503s from the upstream, slow
answers, throttled 429s, firewall 403s, auth 401s, a request no route takes, a
target that is down, one that gets ejected), then opens ``/`` in Chromium over the
DevTools Protocol, types the token as a user would, and reads the page back from the
DOM. A screenshot is kept in tests/artifacts/status-page.png; with
``UPDATE_STATUS_PAGE_SCREENSHOT=1`` it also replaces docs/images/status-page.png.

With ``workers: 2`` the same document comes from the supervisor's merge; that test
checks it at the JSON level.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.chromium import Browser, Page
from tests.integration.conftest import StubUpstream
from tests.integration.gateway_process import free_port
from tests.jwt_keys import HS_SECRET, base_claims, hs_token

TOKEN = "page-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JWT = {"algorithms": ["HS256"], "secret": HS_SECRET, "subject_claim": "user_id"}
REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "tests" / "artifacts" / "status-page.png"
DOCS_IMAGE = REPO / "docs" / "images" / "status-page.png"
SLOW_S = 0.3


def stub_routes(app: web.Application) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such item")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_S)
        return web.Response(text="slow but fine")

    app.router.add_get("/catalog/missing", missing)
    app.router.add_get("/catalog/broken", broken)
    app.router.add_get("/catalog/slow", slow)


@pytest.fixture
async def stub_with_errors(make_stub: Any) -> StubUpstream:
    return await make_stub(stub_routes)


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    chromium = await Browser(tmp_path).start()
    try:
        yield chromium
    finally:
        await chromium.close()


def page_config(stub_url: str, down_port: int, ejected_port: int) -> dict[str, Any]:
    return {
        "admin": {"token": TOKEN},
        "auth": {"jwt": JWT},
        "upstreams": {
            "catalog": {
                "targets": [stub_url, f"http://127.0.0.1:{down_port}"],
                "retries": 0,
                "passive": False,
                "health_check": {"path": "/healthz", "interval": "1s", "timeout": "1s",
                                 "healthy_after": 1, "unhealthy_after": 1},
            },
            "menu": {"targets": [stub_url]},
            "legacy": {
                "targets": [stub_url, f"http://127.0.0.1:{ejected_port}"],
                "retries": 1,
                "passive": {"failures": 1, "eject_for": "5m"},
            },
        },
        "routes": [
            {"name": "catalog", "match": {"path": "/catalog"}, "upstream": "catalog", "auth": "none",
             "throttle": False},
            {"name": "orders", "match": {"path": "/orders", "methods": ["GET"]}, "upstream": "catalog",
             "auth": "required", "throttle": {"authenticated": "3/minute"}},
            {"name": "internal", "match": {"path": "/internal"}, "upstream": "catalog", "auth": "none",
             "firewall": {"default": "allow", "rules": [{"deny": "127.0.0.0/8"}]}},
            {"name": "legacy", "match": {"path": "/legacy"}, "upstream": "legacy", "auth": "none",
             "throttle": False},
            {"name": "menu", "match": {"path": "/menu"}, "upstream": "menu", "auth": "none",
             "throttle": False, "cache": {"ttl": "1h"}},
        ],
    }


async def get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with session.get(url, **kwargs) as response:
        await response.read()
        return response.status


async def wait_until(predicate: Any, *, timeout: float = 30.0, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def admin_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=AUTH) as response:
            assert response.status == 200, await response.text()
            return await response.json()


# -- what the page should show, formatted as the page formats it --------------------

def pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.1f} %"


def fmt_ms(seconds: float) -> str:
    value = seconds * 1000
    if value < 10:
        return f"{value:.2f} ms"
    if value < 100:
        return f"{value:.1f} ms"
    return f"{round(value)} ms"


def quantile_from_metrics(text: str, route: str, q: float) -> float:
    """histogram_quantile(q) over the route's cumulative buckets, computed here from
    /metrics independently of the gateway's own code."""
    buckets = sorted(
        (float(s.labels["le"]), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gateway_request_duration_seconds_bucket" and s.labels["route"] == route
    )
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    raise AssertionError("no bucket holds the rank")


READ_PAGE = """(() => {
  const table = (id) => {
    const rows = {};
    for (const tr of document.querySelectorAll('#' + id + ' tbody tr')) {
      const cells = {};
      for (const cell of tr.querySelectorAll('[data-col]')) cells[cell.dataset.col] = cell.textContent;
      rows[tr.dataset.key] = cells;
    }
    return rows;
  };
  const fields = (id) => Object.fromEntries([...document.querySelectorAll('#' + id + ' [data-field]')]
    .map((dd) => [dd.dataset.field, dd.textContent]));
  const tiles = Object.fromEntries([...document.querySelectorAll('[data-tile]')]
    .map((node) => [node.dataset.tile, node.textContent]));
  return { ready: document.querySelector('#ready').textContent, window: document.querySelector('#window').textContent,
           routes: table('routes'), targets: table('targets'), store: fields('store'), config: fields('config'),
           tiles, login: !document.querySelector('#login').hidden };
})()"""


def cell(page: dict[str, Any], table: str, key: str, column: str) -> str:
    return page[table][key][column]


def check_png(data: bytes) -> tuple[int, int]:
    """A real screenshot: a PNG of a whole page, with more than a few colours in it."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat = b""
    offset = 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    pixels = zlib.decompress(idat)
    assert len(set(pixels)) > 64, "the screenshot is nearly blank"
    return width, height


async def log_in(page: Page, token: str) -> None:
    await page.click("#token")
    await page.type(token)
    await page.press_enter()


async def test_the_page_shows_the_traffic_it_was_sent(
    browser: Browser, stub_with_errors: StubUpstream, gateway_factory: Any
) -> None:
    down_port, ejected_port = free_port(), free_port()
    gw = gateway_factory(page_config(stub_with_errors.url, down_port, ejected_port))
    down_url = f"http://127.0.0.1:{down_port}"
    ejected_url = f"http://127.0.0.1:{ejected_port}"

    async def down_is_seen() -> bool:
        status = await admin_json(gw.admin_url + "/status")
        return any(t["url"] == down_url and not t["healthy"] for t in status["upstreams"]["catalog"]["targets"])

    await wait_until(down_is_seen, what="the health check to mark the dead catalog target down")

    # -- known traffic ----------------------------------------------------------------
    alice = {"Authorization": f"Bearer {hs_token(base_claims(user_id='alice'))}"}
    forged = {"Authorization": f"Bearer {hs_token(base_claims(user_id='alice'), secret='not-the-secret-' + 'x' * 32)}"}
    async with aiohttp.ClientSession() as s:
        catalog = [await get(s, gw.url + "/catalog/items") for _ in range(16)]
        catalog += [await get(s, gw.url + "/catalog/missing") for _ in range(4)]
        catalog += [await get(s, gw.url + "/catalog/broken") for _ in range(2)]
        catalog += [await get(s, gw.url + "/catalog/slow") for _ in range(2)]
        orders = [await get(s, gw.url + "/orders", headers=alice) for _ in range(5)]
        orders += [await get(s, gw.url + "/orders"), await get(s, gw.url + "/orders", headers=forged)]
        internal = [await get(s, gw.url + "/internal/report") for _ in range(2)]
        legacy = [await get(s, gw.url + "/legacy/list") for _ in range(2)]
        unmatched = [await get(s, gw.url + "/nothing-here")]
        menu = [await get(s, gw.url + "/menu/today") for _ in range(4)]  # a miss, then three hits
    assert sorted(catalog) == [200] * 18 + [404] * 4 + [503] * 2
    assert orders == [200, 200, 200, 429, 429, 401, 401]
    assert internal == [403, 403] and legacy == [200, 200] and unmatched == [404] and menu == [200] * 4
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.admin_url + "/metrics", headers=AUTH) as response:
            metrics_text = await response.text()

    # -- the page, as an operator opens it ---------------------------------------------
    page = await browser.new_page()
    await page.goto(gw.admin_url + "/")
    await page.wait_for("!document.querySelector('#login').hidden", what="the token form")
    assert await page.evaluate("document.querySelector('#dashboard').hidden") is True
    await log_in(page, "wrong-token")
    await page.wait_for("document.querySelector('#login-error').textContent === 'That token was refused.'",
                        what="the refusal of a wrong token")
    await log_in(page, TOKEN)
    await page.wait_for(
        "(document.querySelector('#routes tr[data-key=\"r:catalog\"] [data-col=requests]') || {}).textContent === '24'",
        what="the catalog route's figures",
    )
    shown = await page.evaluate(READ_PAGE)

    assert shown["ready"] == "ready" and not shown["login"]
    window_s = int(re.fullmatch(r"figures over the last (\d+) s", shown["window"]).group(1))
    assert 0 < window_s <= 65
    expected_routes = {
        #           requests, 4xx,            5xx,            throttled, denied, auth failures
        "catalog": ("24", pct(4, 24), pct(2, 24), "0", "0", "0"),
        "orders": ("7", pct(4, 7), "0.0 %", "2", "0", "2"),
        "internal": ("2", "100.0 %", "0.0 %", "0", "2", "0"),
        "legacy": ("2", "0.0 %", "0.0 %", "0", "0", "0"),
        "menu": ("4", "0.0 %", "0.0 %", "0", "0", "0"),
        "none": ("1", "100.0 %", "0.0 %", "0", "0", "0"),
    }
    for route, (requests, ratio_4xx, ratio_5xx, throttled, denied, auth) in expected_routes.items():
        row = shown["routes"][f"r:{route}"]
        assert (row["requests"], row["ratio_4xx"], row["ratio_5xx"], row["throttled"], row["denied"],
                row["auth_failures"]) == (requests, ratio_4xx, ratio_5xx, throttled, denied, auth), (route, row)
        assert row["total"] == requests and row["cache_hits"] == ("75.0 %" if route == "menu" else "–")
        assert float(row["rate"]) > 0
    assert list(shown["routes"]) == ["r:catalog", "r:orders", "r:internal", "r:legacy", "r:menu", "r:none"]
    assert cell(shown, "routes", "r:orders", "match") == "GET /orders"
    assert cell(shown, "routes", "r:none", "match") == "(no route matched)"
    # Latency: two answers of 300 ms among 24, the rest fast.
    catalog_row = shown["routes"]["r:catalog"]
    assert catalog_row["p50"] == fmt_ms(quantile_from_metrics(metrics_text, "catalog", 0.5))
    assert catalog_row["p99"] == fmt_ms(quantile_from_metrics(metrics_text, "catalog", 0.99))
    assert float(catalog_row["p50"].split()[0]) < 250
    assert float(catalog_row["p99"].split()[0]) >= SLOW_S * 1000 * 0.8
    assert shown["tiles"] == {
        "rate": shown["tiles"]["rate"], "requests": "40", "ratio_4xx": pct(11, 40), "ratio_5xx": pct(2, 40),
        "p50_ms": shown["tiles"]["p50_ms"], "p99_ms": shown["tiles"]["p99_ms"],
        "throttled": "2", "denied": "2", "auth_failures": "2",
    }

    # Targets: health, last check, traffic, the ejection and why.
    live = shown["targets"]
    assert live["u:catalog"]["summary"] == "round_robin · 1 of 2 available"
    serving = live[f"t:catalog|{stub_with_errors.url}"]
    assert serving["state"] == "up"
    assert re.fullmatch(r"OK 200 in [\d.]+ ms, \d+ s ago", serving["last_check"]), serving
    assert serving["errors"] == f"2 ({pct(2, 27)})"  # the two 503s, of 24 catalog + 3 orders
    assert serving["ejections"] == "0" and serving["last_ejection"] == "–"
    down = live[f"t:catalog|{down_url}"]
    assert down["state"] == "down" and re.fullmatch(r"failed: ClientConnectorError, \d+ s ago", down["last_check"])
    assert down["errors"] == "0" and down["rate"] == "0.00"
    ejected = live[f"t:legacy|{ejected_url}"]
    assert ejected["state"] == "ejected, back in 5 min"
    assert ejected["ejections"] == "1" and ejected["errors"] == "1 (100.0 %)"
    assert re.fullmatch(r"1 consecutive failure, last: connect_error, \d+ s ago", ejected["last_ejection"]), ejected
    assert live[f"t:legacy|{stub_with_errors.url}"]["last_check"] == "– no active check"
    assert live["u:legacy"]["summary"] == "round_robin · 1 of 2 available"

    assert shown["store"]["kind"] == "memory" and shown["store"]["reachable"] == "yes"
    assert shown["store"]["last_error"] == "none" and shown["store"]["recent_errors"] == "0 in the window"
    assert shown["config"]["file"] == str(gw.config_path)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)", shown["config"]["loaded_at"])
    assert shown["config"]["reloads"] == "0 succeeded, 0 refused"
    assert shown["config"]["last_reload"] == "none since start"

    # -- it updates in place -----------------------------------------------------------
    await page.evaluate("window.__same_document = true")
    async with aiohttp.ClientSession() as s:
        assert [await get(s, gw.url + "/catalog/items") for _ in range(3)] == [200] * 3
    await page.wait_for("document.querySelector('#routes tr[data-key=\"r:catalog\"] [data-col=requests]')"
                        ".textContent === '27'", what="the new requests on the page")
    assert await page.evaluate("window.__same_document === true && "
                               "performance.getEntriesByType('navigation').length === 1")
    screenshot = await page.screenshot(ARTIFACT)
    width, height = check_png(screenshot)
    assert width == 1440 and height >= 700 and len(screenshot) > 30_000
    if os.environ.get("UPDATE_STATUS_PAGE_SCREENSHOT") == "1":
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACT, DOCS_IMAGE)

    # -- a refused reload, with markup in its error, shows as text ----------------------
    broken = json.loads(json.dumps(gw.config))
    broken["routes"][0]["throttle"] = {"anonymous": '<b id="injected">soon</b>'}
    gw.config_path.write_text(yaml.safe_dump(broken, sort_keys=False))
    gw.signal(signal.SIGHUP)
    await page.wait_for("document.querySelector('#config [data-field=reloads]').textContent"
                        " === '0 succeeded, 1 refused'", what="the refused reload")
    reload_text = await page.evaluate("document.querySelector('#config [data-field=last_reload]').textContent")
    assert reload_text.startswith("refused, ")
    assert 'routes[0].throttle.anonymous: expected a rate like 60/minute, got \'<b id="injected">soon</b>\'' in reload_text
    assert await page.evaluate("document.getElementById('injected') === null && document.querySelectorAll('b').length === 0")
    gw.config_path.write_text(yaml.safe_dump(gw.config, sort_keys=False))  # what teardown's drain expects

    # -- what the browser did: only its own origin, the token never in a URL -----------
    requests = page.requests()
    assert requests and all(r["url"].startswith(gw.admin_url + "/") for r in requests), [r["url"] for r in requests]
    assert not any(TOKEN in r["url"] for r in requests)
    live_calls = [r for r in requests if r["url"] == gw.admin_url + "/status/live"]
    assert len(live_calls) >= 3
    assert any(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in live_calls)
    assert TOKEN not in await page.evaluate("location.href")
    assert page.problems() == []


async def test_with_workers_the_page_data_is_the_sum_of_every_worker(
    stub_with_errors: StubUpstream, gateway_factory: Any
) -> None:
    config = {
        "server": {"workers": 2, "shutdown_timeout": "5s"},
        "admin": {"token": TOKEN},
        "upstreams": {"catalog": {"targets": [stub_with_errors.url]}},
        "routes": [{"name": "catalog", "match": {"path": "/catalog"}, "upstream": "catalog"}],
    }
    gw = gateway_factory(config)
    # Fresh connections, so SO_REUSEPORT spreads them over both workers.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        statuses = [await get(s, gw.url + "/catalog/items") for _ in range(30)]
        statuses += [await get(s, gw.url + "/catalog/missing") for _ in range(10)]
        statuses += [await get(s, gw.url + "/catalog/broken") for _ in range(2)]
    assert statuses == [200] * 30 + [404] * 10 + [503] * 2

    async def both_served() -> bool:
        lines = gw.access_log()
        return len(lines) >= 42 and len({line["worker"] for line in lines}) == 2

    await wait_until(both_served, what="both workers to have answered (access log)")

    async with aiohttp.ClientSession() as s:
        async with s.get(gw.admin_url + "/status/live") as response:
            assert response.status == 401
        async with s.get(gw.admin_url + "/") as response:
            assert response.status == 200 and "default-src 'none'" in response.headers["Content-Security-Policy"]
    doc = await admin_json(gw.admin_url + "/status/live")
    (route,) = doc["routes"]
    assert (route["name"], route["requests"], route["requests_total"]) == ("catalog", 42, 42)
    assert route["status_classes"] == {"1xx": 0, "2xx": 30, "3xx": 0, "4xx": 10, "5xx": 2}
    assert route["ratio_4xx"] == round(10 / 42, 4) and route["ratio_5xx"] == round(2 / 42, 4)
    assert route["p50_ms"] is not None and route["p50_ms"] <= route["p99_ms"]
    (target,) = doc["upstreams"][0]["targets"]
    assert (target["requests"], target["errors"], target["state"]) == (42, 2, "up")
    assert doc["totals"]["requests"] == 42
    assert [w["state"] for w in doc["workers"]] == ["ready", "ready"]
    assert all("status" not in w for w in doc["workers"])
    # The configuration is the supervisor's: the operator's file, not a worker's copy.
    assert doc["config"]["file"] == str(gw.config_path)
    assert doc["store"]["kind"] == "memory" and doc["store"]["reachable"] is True

    # A refused SIGHUP is counted once, by the supervisor, with its reason.
    broken = json.loads(json.dumps(gw.config))
    broken["routes"][0]["throttle"] = {"anonymous": "soon"}
    gw.config_path.write_text(yaml.safe_dump(broken, sort_keys=False))
    gw.signal(signal.SIGHUP)

    async def refused() -> Any:
        doc = await admin_json(gw.admin_url + "/status/live")
        return doc if doc["config"]["reloads"]["failure"] else None

    doc = await wait_until(refused, what="the refused reload on the page")
    assert doc["config"]["reloads"] == {"success": 0, "failure": 1}
    assert doc["config"]["last_reload"]["result"] == "failure"
    assert "routes[0].throttle.anonymous: expected a rate" in doc["config"]["last_reload"]["error"]
    gw.config_path.write_text(yaml.safe_dump(gw.config, sort_keys=False))
