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
