"""A tiny upstream that runs as its own process, so a test can SIGKILL it.

    python -m tests.integration.upstream_app PORT NAME [DELAY]

Every path answers ``{"served_by": NAME, "path": ...}``; ``/healthz`` answers 200.
``DELAY`` (seconds, default 0) is a think time before each answer: it keeps requests
in flight on the target, so a kill catches as many of them as the load holds there.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def answer(request: web.Request) -> web.Response:
    await request.read()
    delay: float = request.app["delay"]
    if delay:
        await asyncio.sleep(delay)
    return web.json_response({"served_by": request.app["name"], "path": request.raw_path})


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["name"] = name
    app["delay"] = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
