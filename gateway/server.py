"""Running the gateway process: listeners, signals, reload and drain.

- SIGTERM / SIGINT: stop accepting, let in-flight requests finish for up to
  ``server.shutdown_timeout``, close upstream pools, exit 0.
- SIGHUP: re-read the file; a config that fails validation is logged and counted and
  the running one stays; a valid one is compiled into a new runtime and swapped in
  with one assignment. Requests in flight finish under the runtime they started with;
  the old runtime's pools are closed once they have had ``shutdown_timeout`` to drain.
  Reloads run one at a time: a new runtime takes over the store and upstreams of the
  runtime in force, so two built at once from the same one would both take them over,
  and retiring the loser would close what the winner serves with.
  Listener addresses and the admin listener are fixed for the life of the process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from pathlib import Path

from aiohttp import web

from gateway.access_log import AccessLog
from gateway.admin import build_admin_app
from gateway.cache.generations import GENERATIONS_FILE, Generations
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.edge import EdgeHandler
from gateway.http_server import EdgeServer
from gateway.metrics import Metrics
from gateway.reload_history import ReloadHistory
from gateway.runtime import Runtime

__all__ = ["serve", "bind_socket", "open_socket"]

log = logging.getLogger("gateway.server")

_BACKLOG = 1024


def open_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound, not yet listening socket; ``::`` is dual-stack (IPv4 peers appear as
    ::ffff:a.b.c.d). The supervisor binds one without listening to fail early."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # asyncio would set V6ONLY; "[::]:8080" is documented as dual-stack.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening, non-blocking socket ready for ``loop.create_server(sock=...)``."""
    sock = open_socket(host, port, reuse_port=reuse_port)
    try:
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class GatewayProcess:
    def __init__(self, config_path: Path, config: GatewayConfig, *, worker_channel: Path | None = None) -> None:
        """``worker_channel``: this process is one worker under the supervisor
        (gateway/supervisor.py). It then shares the listen ports with its siblings
        (SO_REUSEPORT) and serves its admin app, without the token, on that Unix socket
        in the supervisor's private directory instead of ``admin.listen``, which the
        supervisor owns and where it aggregates the workers."""
        self.config_path = config_path
        self.config = config
        self.worker_channel = worker_channel
        self.metrics = Metrics()
        self.reloads = ReloadHistory(config_path)
        """For the status page; a worker's is unused (its supervisor keeps the real one)."""
        self.access_log = AccessLog(target=config.server.access_log)
        # Cache invalidation generations: a worker shares its supervisor's table (a
        # file in the private run directory), so a write through one worker
        # invalidates the entries of all of them (gateway/cache/generations.py).
        self.generations = Generations(worker_channel.parent / GENERATIONS_FILE if worker_channel is not None else None)
        self.runtime = Runtime(config, metrics=self.metrics, generations=self.generations)
        self.edge = EdgeHandler(self.runtime, metrics=self.metrics, access_log=self.access_log)
        # Bodies cross as sent (SPEC §4a): the edge never inflates a gzip/deflate
        # request body (inflated bytes past the client's Content-Length would reach the
        # upstream as a second request).
        self.http = EdgeServer(
            self.edge,
            on_refused=lambda status: self.metrics.observe_request("none", "OTHER", status, 0.0),
        )
        self.http.apply_limits(max_header_size=config.server.max_header_size, header_timeout=config.server.header_timeout)
        self._servers: list[asyncio.AbstractServer] = []
        self._admin_runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self._old_runtimes: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[None]] = set()
        """Reloads started by SIGHUP: the loop keeps only weak references to tasks."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        worker_channel = self.worker_channel
        await self.runtime.start()
        self.access_log.start()
        for host, port in self.config.server.listen:
            sock = bind_socket(host, port, reuse_port=worker_channel is not None)
            self._servers.append(await loop.create_server(self.http, sock=sock, backlog=_BACKLOG))
            log.info("serving on %s:%s", host, port)
        # The private channel sits in a 0700 directory; admin.token guards the network listener.
        token = None if worker_channel is not None else self.config.admin.token
        admin = build_admin_app(
            metrics=self.metrics, token=token, runtime=lambda: self.runtime,
            reloads=None if worker_channel is not None else self.reloads,
        )
        self._admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
        await self._admin_runner.setup()
        if worker_channel is not None:
            worker_channel.unlink(missing_ok=True)  # left by a predecessor killed in this slot
            await web.UnixSite(self._admin_runner, str(worker_channel)).start()
        else:
            host, port = self.config.admin.listen
            await web.SockSite(self._admin_runner, bind_socket(host, port)).start()
            log.info("admin on %s:%s", host, port)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        settle_heap()

    def _reload_on_signal(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def stop(self) -> None:
        """Begin the drain, as SIGTERM does (a worker calls it when its supervisor is gone)."""
        self._stop.set()

    async def reload(self) -> None:
        """Re-read the file and swap in a runtime built from it; waits for a reload
        already under way, so every reload builds from the runtime in force."""
        async with self._reload_lock:
            await self._reload_now()

    async def _reload_now(self) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            self.metrics.config_reloads_total.labels("failure").inc()
            self.reloads.failed(str(exc))
            log.error("reload refused, the running configuration stays:\n%s", exc)
            return
        if config.server.listen != self.config.server.listen or config.admin != self.config.admin:
            log.warning("reload: listener and admin changes take effect only after a restart")
        runtime = Runtime(config, metrics=self.metrics, previous=self.runtime, generations=self.generations)
        await runtime.start()
        old, self.runtime = self.runtime, runtime
        self.config = config
        self.edge.runtime = runtime
        self.http.apply_limits(max_header_size=config.server.max_header_size, header_timeout=config.server.header_timeout)
        await old.quiesce()
        self._forget_removed_targets(old, runtime)
        self.metrics.config_reloads_total.labels("success").inc()
        self.reloads.succeeded()
        log.info("configuration reloaded from %s", self.config_path)
        task = asyncio.get_running_loop().create_task(self._retire(old))
        self._old_runtimes.add(task)
        task.add_done_callback(self._old_runtimes.discard)

    def _forget_removed_targets(self, old: Runtime, new: Runtime) -> None:
        """Drop the health gauges of targets the new config no longer has: a removed
        target must not keep a "down" series (and its alert) alive until restart."""
        current = {(name, t.label) for name, up in new.upstreams.items() for t in up.targets}
        for name, upstream in old.upstreams.items():
            for target in upstream.targets:
                if (name, target.label) not in current:
                    try:
                        self.metrics.upstream_target_healthy.remove(name, target.label)
                    except KeyError:
                        pass

    async def _retire(self, runtime: Runtime) -> None:
        await asyncio.sleep(self.config.server.shutdown_timeout)
        await runtime.close()
        log.info("retired the runtime replaced by a reload")

    async def run_until_stopped(self) -> None:
        await self._stop.wait()
        log.info("stopping: draining in-flight requests for up to %ss", self.config.server.shutdown_timeout)
        for server in self._servers:
            server.close()
        await self.http.shutdown(self.config.server.shutdown_timeout)
        for task in list(self._old_runtimes):
            task.cancel()
        await self.runtime.close()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self.access_log.close()
        log.info("stopped")


_GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Keep the cyclic garbage collector off the request path.

    What start-up built (modules, config, compiled routes, key material: tens of
    thousands of objects) lives as long as the process, yet every full collection
    walked all of it: 50-100 ms pauses every few seconds under load, long enough for
    a Redis decision to time out and open the store's circuit. ``gc.freeze()`` moves
    it out of the collector's sight. A request makes and drops a few hundred container
    objects, so the default first-generation threshold (700) collected several times
    a second; most of them die by reference counting anyway.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, second, third)


async def _main(config_path: Path, config: GatewayConfig) -> None:
    process = GatewayProcess(config_path, config)
    await process.start()
    await process.run_until_stopped()


def serve(config_path: Path, config: GatewayConfig) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_main(config_path, config))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_main(config_path, config))
