"""Naive aiohttp reverse proxy: the reference row "naive aiohttp proxy".

Why it exists: it is the cheapest proxy anyone could write with aiohttp (one
process, uvloop, one ClientSession, whole bodies read into memory, only status,
body and Content-Type copied back).  Any gateway feature costs CPU on top of this,
so the gap between this row and the gateway rows is the price of the pipeline, and
the gap between this row and nginx is the price of Python + aiohttp.  It also lets
bench/run.py be tested before the gateway exists.

Usage: python bench/naive_proxy.py --listen 127.0.0.1:8081 --upstream 127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web
from yarl import URL

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM = web.AppKey("upstream", str)


def split_hostport(value: str) -> tuple[str, int]:
    """Parse HOST:PORT (the only address form the harness hands out)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


async def proxy(request: web.Request) -> web.Response:
    """Forward one request and copy status, body and Content-Type back, nothing else."""
    body = await request.read()
    url = URL(request.app[UPSTREAM] + request.raw_path, encoded=True)
    async with request.app[SESSION].request(
        request.method, url, data=body or None, allow_redirects=False
    ) as resp:
        payload = await resp.read()
        headers = {}
        if "Content-Type" in resp.headers:
            headers["Content-Type"] = resp.headers["Content-Type"]
        return web.Response(status=resp.status, body=payload, headers=headers)


async def client_session(app: web.Application) -> AsyncIterator[None]:
    """One pooled session for the process lifetime (keep-alive to the upstream)."""
    app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
    yield
    await app[SESSION].close()


async def serve(listen: str, upstream: str) -> None:
    """Serve until SIGTERM/SIGINT, then close cleanly so the harness sees exit 0."""
    app = web.Application()
    app[UPSTREAM] = f"http://{upstream}"
    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_hostport(listen)
    await web.TCPSite(runner, host, port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    args = parser.parse_args()
    uvloop.run(serve(args.listen, args.upstream))


if __name__ == "__main__":
    main()
