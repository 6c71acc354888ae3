"""The admin listener of a multi-worker gateway, served by the supervisor.

With ``server.workers`` > 1 the workers do not bind ``admin.listen``; the supervisor
does, and answers for the gateway as a whole by asking every ready worker over its
private channel (its ordinary admin app on a Unix socket in the supervisor's 0700
run directory, see gateway/worker.py):

- ``GET /healthz``: the supervisor's own liveness (200 while it runs), as a load
  balancer or Docker's HEALTHCHECK expects; it never waits on a worker.
- ``GET /metrics``: every worker's registry merged by gateway/metrics_merge.py
  (counters summed, gauges max), with the supervisor's own
  ``gateway_config_reloads_total``.
- ``GET /readyz``: 200 only when all N workers are up and each says it is ready;
  else 503 with every reason, prefixed by the worker it comes from.
- ``GET /status``: the aggregate view (gateway/status_merge.py), in the same shape
  as a single process's, plus ``supervisor`` and a ``workers`` list with each
  worker's own status.
- ``GET /status/live`` and ``GET /``: the status page's data and its shell, built
  exactly as a single process builds them (gateway/status_live.py) from the
  aggregate status and the merged metrics; the page's figures over the last minute
  come from snapshots of the merged counters, taken every few seconds.
- any ``POST`` (e.g. ``/cache/purge``): sent to every ready worker, because each
  holds its own state; the answer lists each worker's reply, with the worst status.

``admin.token`` guards all of it but ``/healthz`` and the page's shell, with the
same middleware as the single-process admin app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric

from gateway.admin import NO_STORE, admin_middlewares
from gateway.metrics import Metrics
from gateway.metrics_merge import ExpositionError, WorkerMetrics, parse_exposition, render
from gateway.reload_history import ReloadHistory
from gateway.status_live import LiveCounters, live_status
from gateway.status_merge import aggregate_status
from gateway.status_page import status_page_response

__all__ = ["WorkerInfo", "ChannelError", "build_supervisor_admin_app", "SUPERVISOR_FAMILIES"]

log = logging.getLogger("gateway.supervisor")

SUPERVISOR_FAMILIES = frozenset({"gateway_config_reloads"})
"""Metric families the supervisor counts itself (once per SIGHUP); they replace the
workers' families of the same name in the merge."""

_CHANNEL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What the supervisor knows of one worker slot, at one moment."""

    slot: int
    pid: int | None
    state: str
    """``starting``, ``ready``, ``restarting``, ``stopping`` or ``stopped``."""
    restarts: int
    uptime: float | None
    last_exit: str | None
    channel: Path

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.pid is not None


class ChannelError(Exception):
    """A worker did not answer on its private channel (busy, dying, or just restarted)."""


async def ask_worker(
    channel: Path, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None
) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request to a worker's private admin app."""
    headers = {"Content-Type": content_type} if content_type else None
    try:
        connector = aiohttp.UnixConnector(path=str(channel))
        timeout = aiohttp.ClientTimeout(total=_CHANNEL_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.request(method, f"http://worker{path}", data=body, headers=headers) as resp:
                return resp.status, resp.content_type, await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise ChannelError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc


def _decode(content_type: str, body: bytes) -> Any:
    if content_type.endswith("json"):
        try:
            return json.loads(body)
        except ValueError:
            pass
    return body.decode("utf-8", "replace")


def build_supervisor_admin_app(
    *,
    token: str | None,
    workers: Callable[[], Sequence[WorkerInfo]],
    own_metrics: Metrics,
    worker_metrics: WorkerMetrics,
    supervisor_info: Callable[[], dict[str, Any]],
    reloads: ReloadHistory,
) -> web.Application:
    """``workers`` returns the current slots (pids change as workers restart);
    ``reloads``: the supervisor's own, since it is the one that handles SIGHUP."""
    app = web.Application(middlewares=admin_middlewares(token))

    async def each_ready(
        ask: Callable[[WorkerInfo], Awaitable[Any]],
    ) -> list[tuple[WorkerInfo, Any | ChannelError]]:
        ready = [w for w in workers() if w.ready]
        answers = await asyncio.gather(*(ask(w) for w in ready), return_exceptions=True)
        out: list[tuple[WorkerInfo, Any | ChannelError]] = []
        for worker, answer in zip(ready, answers):
            if isinstance(answer, BaseException) and not isinstance(answer, ChannelError):
                raise answer
            out.append((worker, answer))
        return out

    async def healthz(request: web.Request) -> web.Response:
        infos = workers()
        return web.json_response(
            {"status": "ok", "workers": len(infos), "ready": sum(1 for w in infos if w.ready)}
        )

    async def merged_families(own: Sequence[Metric] = ()) -> list[Metric]:
        """Every ready worker's registry, merged (with the retired workers' totals)."""
        async def families(worker: WorkerInfo) -> Any:
            status, _, body = await ask_worker(worker.channel, "GET", "/metrics")
            if status != 200:
                raise ChannelError(f"GET /metrics answered {status}")
            try:
                return parse_exposition(body.decode("utf-8"))
            except (ExpositionError, UnicodeDecodeError) as exc:
                raise ChannelError(str(exc)) from exc

        answers = await each_ready(families)
        for worker, answer in answers:
            if isinstance(answer, ChannelError):
                log.warning("worker %d (pid %s) left out of this scrape: %s", worker.slot, worker.pid, answer)
        # A worker that exited while we waited is already in the retired totals.
        current = {w.pid for w in workers() if w.ready}
        live = {
            worker.pid: answer
            for worker, answer in answers
            if worker.pid in current and not isinstance(answer, ChannelError) and worker.pid is not None
        }
        return worker_metrics.merged(live, own=own)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        own = []
        for family in own_metrics.registry.collect():
            if family.name in SUPERVISOR_FAMILIES:
                # Like the merged families, the supervisor's own carry no *_created series.
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                own.append(family)
        body = render(await merged_families(own))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    live = LiveCounters(merged_families)
    app.cleanup_ctx.append(live.cleanup_ctx)

    async def readiness_and_status(
        *, with_status: bool = True,
    ) -> tuple[list[str], list[dict[str, Any]], dict[str, Any]]:
        async def ask(worker: WorkerInfo) -> tuple[Any, Any]:
            ready_status, ready_type, ready_body = await ask_worker(worker.channel, "GET", "/readyz")
            status: Any = None
            if with_status:
                status_code, status_type, status_body = await ask_worker(worker.channel, "GET", "/status")
                status = _decode(status_type, status_body) if status_code == 200 else None
            return (ready_status, _decode(ready_type, ready_body)), status

        answers = dict((w.slot, a) for w, a in await each_ready(ask))
        reasons: list[str] = []
        per_worker: list[dict[str, Any]] = []
        statuses: list[dict[str, Any]] = []
        for info in workers():
            entry: dict[str, Any] = {
                "slot": info.slot,
                "pid": info.pid,
                "state": info.state,
                "restarts": info.restarts,
                "uptime_s": None if info.uptime is None else round(info.uptime, 1),
                "last_exit": info.last_exit,
            }
            answer = answers.get(info.slot)
            name = f"worker {info.slot}" + (f" (pid {info.pid})" if info.pid else "")
            if not info.ready:
                reasons.append(f"{name} is {info.state}")
            elif answer is None or isinstance(answer, ChannelError):
                reasons.append(f"{name} does not answer on its channel")
                entry["error"] = str(answer) if answer is not None else "no answer"
            else:
                (ready_code, ready_body), status = answer
                if ready_code != 200:
                    said = ready_body.get("reasons") if isinstance(ready_body, dict) else None
                    reasons += [f"{name}: {r}" for r in said] if said else [f"{name}: not ready ({ready_code})"]
                entry["ready"] = ready_code == 200
                if isinstance(status, dict):
                    entry["status"] = status
                    statuses.append(status)
            per_worker.append(entry)
        return reasons, per_worker, aggregate_status(statuses)

    async def readyz(request: web.Request) -> web.Response:
        reasons, _, _ = await readiness_and_status(with_status=False)
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        return web.json_response({"status": "ready"})

    async def status(request: web.Request) -> web.Response:
        reasons, per_worker, aggregate = await readiness_and_status()
        return web.json_response(
            {**aggregate, "ready": not reasons, "reasons": reasons,
             "supervisor": supervisor_info(), "workers": per_worker}
        )

    async def status_live(request: web.Request) -> web.Response:
        # Both ask every worker; neither waits for the other.
        (reasons, per_worker, aggregate), window = await asyncio.gather(readiness_and_status(), live.window())
        if "upstreams" not in aggregate or "routes" not in aggregate:
            return web.json_response({"ready": False, "reasons": reasons, "detail": "no worker is ready"},
                                     status=503, headers=NO_STORE)
        # Each worker's own full status is on /status; the page shows the slots.
        slots = [{key: value for key, value in entry.items() if key != "status"} for entry in per_worker]
        document = live_status(status=aggregate, reasons=reasons, window=window, config=reloads.status(), workers=slots)
        return web.json_response(document, headers=NO_STORE)

    async def fan_out(request: web.Request) -> web.Response:
        body = await request.read()
        path = request.rel_url.raw_path_qs

        async def send(worker: WorkerInfo) -> tuple[int, str, bytes]:
            return await ask_worker(worker.channel, "POST", path, body=body, content_type=request.content_type)

        answers = await each_ready(send)
        if not answers:
            return web.json_response({"status": "no worker is ready", "workers": []}, status=503)
        replies = []
        worst = 0
        for worker, answer in answers:
            if isinstance(answer, ChannelError):
                replies.append({"slot": worker.slot, "pid": worker.pid, "error": str(answer)})
                worst = max(worst, 502)
            else:
                code, content_type, payload = answer
                replies.append({"slot": worker.slot, "pid": worker.pid, "status": code,
                                "body": _decode(content_type, payload)})
                worst = max(worst, code)
        return web.json_response({"workers": replies}, status=worst)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/status/live", status_live)
    app.router.add_get("/", status_page_response)
    app.router.add_post("/{tail:.*}", fan_out)
    return app
