"""One serving process under the supervisor (``python -m gateway.worker``).

Started only by gateway/supervisor.py, never by operators: ``gateway run`` with
``server.workers`` > 1 starts N of these. A worker is an ordinary
:class:`~gateway.server.GatewayProcess` (same listeners, pipeline, SIGHUP reload and
SIGTERM drain) with three differences:

- it binds the listen ports with SO_REUSEPORT, so the kernel spreads connections
  over the workers;
- its admin app is served on a Unix socket in the supervisor's private directory
  (``--channel``), where the supervisor reads its metrics, status and readiness;
  ``admin.listen`` belongs to the supervisor;
- it holds one end of a socket pair (``--lifeline``) whose other end only the
  supervisor has. It writes ``ready`` there once it serves, and when it reads EOF
  the supervisor is gone (even by SIGKILL), so it drains and exits instead of
  serving unsupervised forever.

``--config`` is the supervisor's snapshot of the last configuration that passed
validation, so a worker restarted after a refused reload still starts with the
configuration in force, not with the broken file.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

__all__ = ["main", "READY_MESSAGE"]

log = logging.getLogger("gateway.worker")

READY_MESSAGE = b"ready\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway.worker", description="a gateway worker (started by the supervisor)")
    parser.add_argument("--config", required=True, type=Path, help="the supervisor's validated config snapshot")
    parser.add_argument("--channel", required=True, type=Path, help="Unix socket path for the private admin app")
    parser.add_argument("--lifeline", required=True, type=int, help="inherited socket fd connected to the supervisor")
    parser.add_argument("--slot", required=True, type=int, help="the supervisor's slot number, for logs")
    return parser


async def _watch_lifeline(lifeline: socket.socket, stop: Callable[[], None]) -> None:
    """The supervisor never writes after start-up: EOF or an error means it is gone."""
    loop = asyncio.get_running_loop()
    try:
        while await loop.sock_recv(lifeline, 64):
            pass
    except OSError:
        pass
    log.warning("the supervisor is gone; draining and exiting")
    stop()


async def _serve(config_path: Path, channel: Path, lifeline: socket.socket) -> None:
    from gateway.config import load_config
    from gateway.server import GatewayProcess

    config = load_config(config_path)
    process = GatewayProcess(config_path, config, worker_channel=channel)
    await process.start()
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(lifeline, READY_MESSAGE)
    except OSError:
        pass  # the supervisor died while we started: the watcher below sees EOF at once
    watcher = loop.create_task(_watch_lifeline(lifeline, process.stop))
    try:
        await process.run_until_stopped()
    finally:
        orphaned = watcher.done()
        watcher.cancel()
    if orphaned:
        # Nobody is left to remove the supervisor's private run directory (its config
        # snapshot and channels); whichever orphan gets here first does.
        shutil.rmtree(channel.parent, ignore_errors=True)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    # Until GatewayProcess installs its handler, a SIGHUP must not kill us (its
    # default action). The supervisor re-sends one if the config changed meanwhile.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s [worker {args.slot} pid %(process)d]: %(message)s",
    )
    from gateway.config import ConfigError
    from gateway.http_server import ParserUnavailable, require_strict_parser

    lifeline = socket.socket(fileno=args.lifeline)
    lifeline.setblocking(False)
    try:
        require_strict_parser()
        _run(_serve(args.config, args.channel, lifeline))
    except ParserUnavailable as exc:
        log.error("%s", exc)
        return 1
    except ConfigError as exc:
        log.error("the configuration snapshot does not load:\n%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    finally:
        lifeline.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
