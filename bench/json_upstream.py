"""Fallback upstream: answers every request with one fixed JSON body.

Why it exists: bench/run.py wants a fixed nginx `return 200 '<json>'` upstream, so
that the upstream is never the bottleneck.  When nginx cannot be found or installed
this keeps the harness usable; run.py says loudly that the figures are then not
comparable with BENCH.md (this upstream costs far more CPU than nginx).

Usage: python bench/json_upstream.py --listen 127.0.0.1:8001 --body-file body.json
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import uvloop
from aiohttp import web


async def serve(listen: str, body: bytes) -> None:
    """Serve the body on every path until SIGTERM/SIGINT."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host, int(port), backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    parser.add_argument("--body-file", required=True, type=Path)
    args = parser.parse_args()
    uvloop.run(serve(args.listen, args.body_file.read_bytes()))


if __name__ == "__main__":
    main()
