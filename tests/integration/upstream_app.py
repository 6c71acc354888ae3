"""A tiny upstream that runs as its own process, so a test can SIGKILL it.

    python -m tests.integration.upstream_app PORT NAME

Every path answers ``{"served_by": NAME, "path": ...}``; ``/healthz`` answers 200.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def answer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"served_by": request.app["name"], "path": request.raw_path})


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app["name"] = name
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
