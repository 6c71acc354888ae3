"""The real ``gateway run`` process under abusive clients (SPEC §4a): floods of
refused requests and clients that never finish their request head. The evidence is
what the gateway logs, counts and answers, never how long something took."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import simple_config


def metric_total(text: str, sample_name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


async def metrics_of(admin_url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(admin_url + "/metrics") as response:
            return await response.text()


def lines_matching(log: str, pattern: str) -> list[str]:
    return [line for line in log.splitlines() if re.search(pattern, line)]


def bound_for(elapsed: float, interval: float = 10.0) -> int:
    """Most lines a rate-limited logger may write over ``elapsed`` seconds: one per
    interval, plus the first, plus one for a boundary crossed mid-flood."""
    return int(elapsed // interval) + 2


FLOOD = 300


async def test_a_flood_of_firewall_denies_is_counted_not_logged_line_by_line(stub, gateway_factory):
    config = {**simple_config(stub.url), "firewall": {"default": "deny"}}
    gw = gateway_factory(config)
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        for _ in range(FLOOD):
            async with session.get(gw.url + "/") as response:
                assert response.status == 403
    elapsed = time.monotonic() - started
    metrics = await metrics_of(gw.admin_url)
    assert metric_total(metrics, "gateway_firewall_denied_total", route="main") == FLOOD
    denied_lines = lines_matching(gw.log(), r"gateway\.firewall: denied")
    assert 1 <= len(denied_lines) <= bound_for(elapsed), denied_lines[:5]
    assert stub.requests == []


def refused_by_the_parser(port: int) -> bytes:
    # Two Content-Lengths: ambiguous framing that llhttp refuses before any handler runs.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


async def test_a_flood_of_parser_refusals_is_counted_not_logged_line_by_line(stub, gateway_factory):
    gw = gateway_factory(simple_config(stub.url))
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    for _ in range(FLOOD):
        reply = await loop.run_in_executor(None, refused_by_the_parser, gw.port)
        assert reply.split(b" ", 2)[1] == b"400", reply[:100]  # HTTP/1.0: the version was not parsed
    elapsed = time.monotonic() - started
    metrics = await metrics_of(gw.admin_url)
    assert metric_total(metrics, "gateway_requests_total", route="none", code="400") == FLOOD
    refused_lines = lines_matching(gw.log(), r"gateway\.http: refused request")
    assert 1 <= len(refused_lines) <= bound_for(elapsed), refused_lines[:5]
    assert stub.requests == []


class Slowloris:
    """A client that starts a request head and then sends one byte per second,
    never finishing it. Records how its connection ended and after how long."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reply = b""
        self.lifetime: float | None = None
        """Seconds from connect until the gateway closed the connection; ``None``
        while it is still open."""

    async def run(self, *, give_up_after: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        connected = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        closed = asyncio.ensure_future(reader.read())  # until EOF: a 408, or nothing
        try:
            for byte in b"X-Slow: " + b"a" * 10_000:
                if closed.done() or time.monotonic() - connected > give_up_after:
                    break
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.wait([closed], timeout=1.0)
            try:
                self.reply = await asyncio.wait_for(closed, timeout=5)
            except (TimeoutError, ConnectionError):
                return
            self.lifetime = time.monotonic() - connected
        finally:
            closed.cancel()
            writer.close()


HEADER_TIMEOUT = 1.0
MARGIN = 10.0  # generous: a loaded 2-core box may run the sweep late


async def test_slowloris_connections_are_closed_while_normal_clients_are_served(stub, gateway_factory):
    config = {**simple_config(stub.url), "server": {"header_timeout": f"{HEADER_TIMEOUT:g}s"}}
    gw = gateway_factory(config)
    attackers = [Slowloris(gw.port) for _ in range(50)]
    attack = asyncio.gather(*(a.run(give_up_after=HEADER_TIMEOUT + MARGIN + 5) for a in attackers))

    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        while not attack.done():
            async with session.get(gw.url + "/normal") as response:
                statuses.append(response.status)
            await asyncio.sleep(0.1)
    await attack

    assert statuses and set(statuses) == {200}, statuses
    for attacker in attackers:
        assert attacker.lifetime is not None, "a slowloris connection was never closed"
        assert attacker.lifetime < HEADER_TIMEOUT + MARGIN, attacker.lifetime
        assert attacker.reply == b"" or attacker.reply.startswith(b"HTTP/1.1 408"), attacker.reply[:100]
    assert {r["path_qs"] for r in stub.requests} == {"/normal"}  # no slow request got through
    metrics = await metrics_of(gw.admin_url)
    assert metric_total(metrics, "gateway_requests_total", route="none", code="408") == 50


async def test_a_silent_connection_is_closed_but_an_idle_keep_alive_one_is_not(stub, gateway_factory):
    config = {**simple_config(stub.url), "server": {"header_timeout": f"{HEADER_TIMEOUT:g}s"}}
    gw = gateway_factory(config)
    # A connection that never sends a byte: closed without a response.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    assert await asyncio.wait_for(reader.read(), timeout=HEADER_TIMEOUT + MARGIN) == b""
    writer.close()

    # A keep-alive connection between requests is governed by the keep-alive timeout:
    # still usable well after header_timeout has passed.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    request = b"GET /again HTTP/1.1\r\nHost: idle\r\n\r\n"
    for attempt in range(2):
        if attempt:
            await asyncio.sleep(HEADER_TIMEOUT * 4)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        await reader.readexactly(length)
    writer.close()
    assert len(stub.requests) == 2


async def test_a_slow_body_is_not_a_slow_head(stub, gateway_factory):
    # Once the head is complete, body_timeout governs, not header_timeout.
    config = {**simple_config(stub.url), "server": {"header_timeout": f"{HEADER_TIMEOUT:g}s"}}
    gw = gateway_factory(config)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: slow\r\nContent-Length: 5\r\n\r\nab")
    await asyncio.sleep(HEADER_TIMEOUT * 3)
    writer.write(b"cde")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert head.startswith(b"HTTP/1.1 200"), head
    writer.close()
    assert [r["path_qs"] for r in stub.requests] == ["/upload"]
