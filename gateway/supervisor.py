"""``server.workers`` > 1: N serving processes under one supervisor process.

Why processes: one Python process serves from one core. The workers share the
listen ports through SO_REUSEPORT (each binds its own socket and the kernel spreads
new connections over them), so no request passes through the supervisor; it only
starts, watches and signals the workers, and owns the admin listener
(gateway/supervisor_admin.py), where it merges what the workers report.

- Start: the supervisor validates the file, writes a snapshot of it in a private
  0700 run directory, checks that it can bind every address, starts the workers
  (``python -m gateway.worker``, each in its own process group so that a terminal's
  Ctrl-C reaches only the supervisor, which decides what the workers get), and
  opens the admin listener once every worker has said it serves. A worker that
  fails before it ever served makes the whole start fail (exit 1), as a single
  process would.
- A worker that dies is restarted in its slot, at once if it had been up a while
  and with doubling waits if it keeps dying young (gateway/restart_backoff.py);
  each exit is logged with its status. A restarted worker loads the snapshot, i.e.
  the last configuration that passed validation.
- SIGHUP: the supervisor validates the file first. Invalid: every error is logged,
  ``gateway_config_reloads_total{result="failure"}`` goes up once, and no worker
  is disturbed. Valid: the snapshot is replaced, every worker gets SIGHUP (each
  swaps its runtime as a single process does) and success is counted once.
  Listen addresses, the admin listener and the worker count are fixed for the
  life of the supervisor.
- SIGTERM / SIGINT: every worker gets SIGTERM and drains for up to
  ``server.shutdown_timeout``; the supervisor waits that long plus a margin, kills
  any worker still there, and exits 0.
- If the supervisor itself is killed, each worker sees its lifeline socket close
  and drains and exits rather than serving unsupervised (gateway/worker.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from gateway.cache.generations import GENERATIONS_FILE, Generations
from gateway.config import ConfigError, ConfigIssue, GatewayConfig, parse_config
from gateway.config.loader import load_yaml
from gateway.metrics import Metrics
from gateway.metrics_merge import WorkerMetrics
from gateway.reload_history import ReloadHistory
from gateway.restart_backoff import RestartBackoff
from gateway.server import bind_socket, open_socket
from gateway.supervisor_admin import WorkerInfo, build_supervisor_admin_app
from gateway.worker import READY_MESSAGE

__all__ = ["Supervisor", "WorkerStartError", "worker_count", "read_config", "describe_exit", "run_supervisor"]

log = logging.getLogger("gateway.supervisor")

READY_TIMEOUT_S = 60.0
"""A worker that has not said it serves by then is killed (and restarted)."""
DRAIN_MARGIN_S = 3.0
"""Beyond ``shutdown_timeout``, for workers to close pools and exit after draining."""
KILL_WAIT_S = 5.0


class WorkerStartError(Exception):
    """A worker failed before it ever served, so the gateway cannot start."""


def worker_count(setting: int | Literal["auto"]) -> int:
    """``server.workers`` as a number: ``auto`` is the CPUs this process may run on
    (its affinity mask, which honours ``taskset`` and cpusets; else the CPU count)."""
    if setting != "auto":
        return setting
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def read_config(path: Path) -> tuple[bytes, GatewayConfig]:
    """The file's bytes and their validation, from one read, so that the snapshot
    the workers load is exactly what was validated even if the file changes again."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(path), f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(path), "the file is not UTF-8 text")]) from None
    return data, parse_config(load_yaml(text))


def _probe_bind(host: str, port: int, *, reuse_port: bool) -> None:
    """Fail now, with the OSError a worker would hit, if an address cannot be bound.
    The probe does not listen, so no connection is ever queued on it."""
    open_socket(host, port, reuse_port=reuse_port).close()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class _Slot:
    """One worker position; its process changes as workers die and restart."""

    index: int
    channel: Path
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    process: asyncio.subprocess.Process | None = None
    state: str = "starting"
    generation: int = 0
    """The config snapshot generation the current process loaded."""
    restarts: int = 0
    started_at: float = 0.0
    last_exit: str | None = None
    ever_ready: bool = False

    def info(self) -> WorkerInfo:
        running = self.process is not None and self.process.returncode is None
        return WorkerInfo(
            slot=self.index,
            pid=self.process.pid if running and self.process is not None else None,
            state=self.state,
            restarts=self.restarts,
            uptime=time.monotonic() - self.started_at if running else None,
            last_exit=self.last_exit,
            channel=self.channel,
        )


class Supervisor:
    def __init__(self, config_path: Path, config: GatewayConfig, *, workers: int) -> None:
        if workers < 2:
            raise ValueError("the supervisor is for 2 workers or more; 1 runs GatewayProcess directly")
        self.config_path = config_path
        self.config = config
        """The file's configuration in force (its ``workers`` may differ from ours: --workers)."""
        self.workers = workers
        self.metrics = Metrics()
        """Only ``gateway_config_reloads_total`` is counted here; the rest comes from workers."""
        self.worker_metrics = WorkerMetrics()
        self.reloads = ReloadHistory(config_path)
        self._run_dir = Path()
        self._snapshot = Path()
        self._generation = 0
        self._slots: list[_Slot] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._startup_failure: str | None = None
        self._admin_runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ life cycle

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then drain; the exit status (0).

        Raises OSError when an address cannot be bound and WorkerStartError when a
        worker fails before it ever served; the workers are stopped first."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._run_dir = Path(tempfile.mkdtemp(prefix="gateway-"))  # 0700: only we reach the channels
        self._snapshot = self._run_dir / "config.yaml"
        Generations.create_file(self._run_dir / GENERATIONS_FILE)  # the workers' shared cache invalidations
        self._slots = [_Slot(i, self._run_dir / f"worker-{i}.sock") for i in range(self.workers)]
        try:
            data, self.config = read_config(self.config_path)
            self._write_snapshot(data)
            for host, port in self.config.server.listen:
                _probe_bind(host, port, reuse_port=True)
            _probe_bind(*self.config.admin.listen, reuse_port=False)
            self._tasks = [loop.create_task(self._keep_running(slot)) for slot in self._slots]
            await self._wait_started()
            if self._startup_failure is not None:
                raise WorkerStartError(self._startup_failure)
            if not self._stop.is_set():
                await self._start_admin()
                listen = ", ".join(f"{h}:{p}" for h, p in self.config.server.listen)
                log.info("%d workers serving on %s (SO_REUSEPORT)", self.workers, listen)
            await self._stop.wait()
            return 0
        finally:
            await self._drain()
            if self._admin_runner is not None:
                await self._admin_runner.cleanup()
            shutil.rmtree(self._run_dir, ignore_errors=True)

    async def _wait_started(self) -> None:
        stop = asyncio.ensure_future(self._stop.wait())
        started = asyncio.ensure_future(self._started.wait())
        try:
            await asyncio.wait({stop, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            started.cancel()

    async def _start_admin(self) -> None:
        app = build_supervisor_admin_app(
            token=self.config.admin.token,
            workers=lambda: [slot.info() for slot in self._slots],
            own_metrics=self.metrics,
            worker_metrics=self.worker_metrics,
            supervisor_info=self._info,
            reloads=self.reloads,
        )
        self._admin_runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._admin_runner.setup()
        host, port = self.config.admin.listen
        await web.SockSite(self._admin_runner, bind_socket(host, port)).start()
        log.info("admin on %s:%s (aggregating %d workers)", host, port, self.workers)

    def _info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "workers": self.workers,
            "config": str(self.config_path),
            "config_generation": self._generation,
        }

    def _request_stop(self, signum: int) -> None:
        if not self._stop.is_set():
            log.info("%s: stopping the workers; they drain for up to %ss",
                     signal.Signals(signum).name, self.config.server.shutdown_timeout)
        self._stop.set()

    async def _drain(self) -> None:
        self._stop.set()  # also wakes slots waiting out a restart delay
        for slot in self._slots:
            self._signal(slot, signal.SIGTERM)
            if slot.process is not None and slot.process.returncode is None:
                slot.state = "stopping"
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self.config.server.shutdown_timeout + DRAIN_MARGIN_S)
        if pending:
            for slot in self._slots:
                if slot.process is not None and slot.process.returncode is None:
                    log.error("worker %d (pid %d) still running after the drain; killing it",
                              slot.index, slot.process.pid)
                    self._signal(slot, signal.SIGKILL)
            _, pending = await asyncio.wait(pending, timeout=KILL_WAIT_S)
            for task in pending:
                task.cancel()
        log.info("stopped")

    @staticmethod
    def _signal(slot: _Slot, signum: int) -> None:
        if slot.process is not None and slot.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                slot.process.send_signal(signum)

    # ------------------------------------------------------------------ one slot

    async def _keep_running(self, slot: _Slot) -> None:
        """Start the slot's worker, wait for it to exit, restart it, until stopping."""
        while not self._stop.is_set():
            slot.state = "starting"
            slot.started_at = time.monotonic()
            ready = False
            try:
                process, lifeline = await self._spawn(slot)
            except OSError as exc:
                code_text = f"could not be started: {exc}"
            else:
                with lifeline:
                    ready = await self._await_ready(slot, process, lifeline)
                    if ready:
                        self._on_ready(slot, process)
                    code = await process.wait()
                code_text = describe_exit(code)
                self.worker_metrics.retire(process.pid)
            slot.last_exit = code_text
            lived = time.monotonic() - slot.started_at
            if self._stop.is_set():
                slot.state = "stopped"
                log.info("worker %d %s", slot.index, code_text)
                return
            if not slot.ever_ready and not self._started.is_set():
                self._startup_failure = f"worker {slot.index} {code_text} before it served"
                self._started.set()
                return
            delay = slot.backoff.after_exit(lived if ready else 0.0)
            slot.state = "restarting"
            slot.restarts += 1
            log.error("worker %d %s after %.1fs; restarting it in %.1fs (restart %d)",
                      slot.index, code_text, lived, delay, slot.restarts)
            if delay > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    async def _spawn(self, slot: _Slot) -> tuple[asyncio.subprocess.Process, socket.socket]:
        ours, theirs = socket.socketpair()
        try:
            argv = [
                sys.executable, "-m", "gateway.worker",
                "--config", str(self._snapshot),
                "--channel", str(slot.channel),
                "--lifeline", str(theirs.fileno()),
                "--slot", str(slot.index),
            ]
            slot.generation = self._generation
            slot.process = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker has its copy; ours must go so EOF means "worker gone"
        ours.setblocking(False)
        log.info("worker %d started (pid %d)", slot.index, slot.process.pid)
        return slot.process, ours

    async def _await_ready(self, slot: _Slot, process: asyncio.subprocess.Process, lifeline: socket.socket) -> bool:
        """True once the worker writes READY_MESSAGE; False if it exits (EOF) first.
        One that says nothing for READY_TIMEOUT_S is killed."""
        loop = asyncio.get_running_loop()
        received = b""
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                while len(received) < len(READY_MESSAGE):
                    chunk = await loop.sock_recv(lifeline, len(READY_MESSAGE) - len(received))
                    if not chunk:
                        return False
                    received += chunk
        except (asyncio.TimeoutError, OSError) as exc:
            log.error("worker %d (pid %d) did not become ready (%s); killing it",
                      slot.index, process.pid, exc.__class__.__name__)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return False
        return received == READY_MESSAGE

    def _on_ready(self, slot: _Slot, process: asyncio.subprocess.Process) -> None:
        slot.ever_ready = True
        if self._stop.is_set():
            return
        slot.state = "ready"
        if slot.generation < self._generation:
            # A reload happened while it started: it may have read the old snapshot.
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGHUP)
            slot.generation = self._generation
        log.info("worker %d (pid %d) serving", slot.index, process.pid)
        if all(s.ever_ready for s in self._slots):
            self._started.set()

    # ------------------------------------------------------------------ reload

    def _write_snapshot(self, data: bytes) -> None:
        partial = self._snapshot.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, self._snapshot)  # a worker starting now reads old or new, never half

    def reload(self) -> None:
        """SIGHUP: validate, then forward to the workers; see the module docstring."""
        if self._stop.is_set():
            return
        try:
            data, config = read_config(self.config_path)
        except ConfigError as exc:
            self.metrics.config_reloads_total.labels("failure").inc()
            self.reloads.failed(str(exc))
            log.error("reload refused (%d error(s)), the running configuration stays:\n%s", len(exc.issues), exc)
            return
        fixed = (self.config.server.listen, self.config.admin, self.config.server.workers)
        if (config.server.listen, config.admin, config.server.workers) != fixed:
            log.warning("reload: listener, admin and workers changes take effect only after a restart")
        self._write_snapshot(data)
        self._generation += 1
        self.config = config
        for slot in self._slots:
            if slot.state == "ready" and slot.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGHUP)
                slot.generation = self._generation
        self.metrics.config_reloads_total.labels("success").inc()
        self.reloads.succeeded()
        log.info("configuration reloaded from %s; forwarded to %d ready worker(s)",
                 self.config_path, sum(1 for s in self._slots if s.state == "ready"))


def run_supervisor(config_path: Path, config: GatewayConfig, *, workers: int) -> int:
    """Run the supervisor's event loop (plain asyncio: it is not on the request path)."""
    return asyncio.run(Supervisor(config_path, config, workers=workers).run())
