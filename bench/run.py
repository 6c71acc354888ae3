#!/usr/bin/env python3
"""Benchmark harness: the gateway against nginx proxy_pass, measured the BENCH.md way.

Why it is built like this (see docs/performance.md for the long form):
- absolute RPS on this shared 2-vCPU VM drifts 15-30 % between rounds, so every
  round runs nginx `proxy_pass` (1 worker, upstream keepalive 64) and the gateway
  alternately, and the headline figure is the ratio measured in the same round;
- CPU microseconds per request of the proxy's whole process tree is the steadiest
  figure under contention, so it is reported beside RPS;
- a run is repeated once (and marked) when the hypervisor stole > 5 % of the machine
  or other processes used > 20 % of a core while it ran;
- the upstream is a fixed nginx `return 200 '<303-byte JSON>'`, never the bottleneck;
- every round also runs the Python floor (bench/floor_relay.py: raw bytes relayed on
  uvloop + httptools), so each gateway row shows its distance to what Python can do;
- a gateway that runs N processes is compared with nginx running N workers (started
  for the round when --nginx-workers differs);
- every target runs at the throughput count (--connections, 50); upstream direct,
  nginx proxy_pass, the floor and the focus scenarios (passthrough, all_stages) also
  at 1 connection (added latency), and all but upstream direct also above the
  upstream pool (200 connections): every row at every count would take twice as long.

Run from the repository root:  .venv/bin/python bench/run.py [--quick] [--scenario NAME]
Standard library + PyYAML only (bench/naive_proxy.py needs aiohttp + uvloop).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import http.client
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SCENARIOS = BENCH / "scenarios"
DOC = REPO / "docs" / "performance.md"
DOC_BEGIN = "<!-- bench:begin -->"
DOC_END = "<!-- bench:end -->"
HOST = "127.0.0.1"
BODY_SIZE = 303
CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000  # /proc/PID/stat flags bit: kernel thread
STEAL_LIMIT_PCT = 5.0  # of machine time
OTHERS_LIMIT_PCT = 20.0  # of one core
UPSTREAM_LABEL = "upstream direct"
NGINX_LABEL = "nginx proxy_pass"
NGINX_CACHE_LABEL = "nginx proxy_cache hit"
NAIVE_LABEL = "naive aiohttp proxy"
FLOOR_LABEL = "python floor relay"
FOCUS_DEFAULT = ("passthrough", "all_stages")
"""Scenarios measured at the latency and above-pool counts too, unless --focus or
--scenario says otherwise: pass-through and every-stage-on are issue 10's headline rows."""
PASSTHROUGH_LABEL = "gateway: passthrough"
"""The 1-process row a multi-process scenario's ratio is compared with (issue 10)."""
P99_GROWTH_LIMIT = 3.0
"""Issue 10: above the pool, p99 within 3x of the throughput count's p99."""
ACCESS_LOG_WAIT_S = 5.0
"""The gateway writes its access log in batches (every 200 ms): how long to wait for
a run's last lines before calling them missing."""
READY_TIMEOUT_S = 30.0
CACHE_COUNTER = re.compile(r'^gateway_cache_requests_total\{[^}]*\bresult="(\w+)"[^}]*\} (\S+)$', re.MULTILINE)
STATUS_COUNTER = re.compile(r'^gateway_requests_total\{[^}]*\bcode="(\d+)"[^}]*\} (\S+)$', re.MULTILINE)
STOP_GRACE_S = 5.0

T = TypeVar("T")


# --------------------------------------------------------------------------- errors


class BenchError(Exception):
    """A condition that stops the whole benchmark with a clear message."""


class StartError(Exception):
    """A process that did not come up; carries its stderr so the user sees why."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


# --------------------------------------------------------------------------- data


@dataclass
class Target:
    """Something wrk can hit, and the process tree whose CPU it costs."""

    label: str
    address: str  # host:port
    root_pid: int
    headers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    helper_pids: list[int] = field(default_factory=list)
    """Services the target needs (its Redis): their CPU is charged to the target."""
    hit_path: bool = False
    """Answers from its cache: compared with nginx proxy_cache hits as well."""
    cache_counts: Callable[[], dict[str, int]] | None = None
    """Reads the target's own cache counters (result -> count), around every run, to
    show that what was measured were hits (the gateway's /metrics)."""
    reference: str = NGINX_LABEL
    """The row whose same-run RPS this one's `× nginx` divides by: nginx proxy_pass
    with as many workers as this target has processes."""
    latency: bool = False
    """Also measured at the latency connection counts (1)."""
    pool: bool = False
    """Also measured at the above-pool connection counts (200)."""
    access_log: Path | None = None
    """The file the target writes its access log to: it must grow by a line per request."""
    status_counts: Callable[[], dict[str, int] | None] | None = None
    """Reads the target's answers by status code (the gateway's /metrics), so that a
    row with non-2xx answers says which: a 429 is a limit too low for the bench, a 503
    a store or pool that gave up."""


@dataclass
class WrkResult:
    """What the lua done() hook printed (latencies in microseconds)."""

    requests: int
    duration_us: int
    bytes: int
    connect: int
    read: int
    write: int
    status: int  # wrk counts responses with status > 399 here
    timeout: int
    p50_us: float
    p99_us: float
    mean_us: float
    max_us: float

    @property
    def socket_errors(self) -> int:
        return self.connect + self.read + self.write + self.timeout

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


@dataclass
class RunResult:
    """One measured wrk run of one target, with its contention figures."""

    label: str
    connections: int
    run: int
    rps: float
    p50_us: float
    p99_us: float
    cpu_us_per_request: float | None
    non_2xx: int
    socket_errors: int
    steal_pct: float
    others_pct_of_core: float
    busiest_other: str = ""
    rerun: bool = False
    noisy: bool = False
    failed: str = ""
    first_attempt: dict | None = None
    requests: int = 0
    cache: dict[str, int] | None = None
    """How much each of the target's cache counters grew over the run (hit, miss, ...)."""
    logged: int | None = None
    """Lines the target's access log grew by over the run (access-log rows only)."""
    statuses: dict[str, int] | None = None
    """Non-2xx answers the target counted over the run, by status code (gateway rows)."""


@dataclass(frozen=True)
class ProcStat:
    """The few /proc/PID/stat fields we need."""

    pid: int
    ppid: int
    kthread: bool
    start: int
    ticks: int  # utime + stime + cutime + cstime: reaped children stay counted
    comm: str


@dataclass
class Scenario:
    """A gateway config template plus optional extra request headers for wrk."""

    name: str
    template: str
    headers: list[str]

    def config(self) -> dict:
        """The template as YAML, placeholders filled with dummies ({} when unreadable)."""
        text = render_scenario(self.template, {"LISTEN": "x", "ADMIN": "x", "UPSTREAM": "x"})
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError:
            return {}
        return config if isinstance(config, dict) else {}

    @property
    def caches(self) -> bool:
        """A route with a `cache:` key: its row is a hit row, compared with nginx proxy_cache."""
        routes = self.config().get("routes") or []
        return any(isinstance(route, dict) and route.get("cache") for route in routes)


@dataclass
class Settings:
    """The knobs of one benchmark invocation."""

    wrk: str
    duration: int
    connections: list[int]
    """Every target."""
    runs: int
    warmup: int
    lua: Path
    settle: float  # longest wait for a quiet machine before a rerun
    latency: list[int] = field(default_factory=list)
    """Only targets marked latency (upstream direct, nginx proxy_pass, the floor, the focus scenarios)."""
    pool: list[int] = field(default_factory=list)
    """Only targets marked pool (nginx proxy_pass, the floor and the focus scenarios)."""


# --------------------------------------------------------------------------- CLI


def parse_connections(text: str) -> list[int]:
    """`1,50` -> [1, 50]; wrk needs at least one connection per thread."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected a comma list of positive integers")
    return values


def parse_extra_connections(text: str) -> list[int]:
    """Like parse_connections, but `` (or `none`) turns the extra runs off."""
    return [] if text.strip().lower() in ("", "none") else parse_connections(text)


def parse_names(text: str) -> list[str]:
    """`passthrough,all_stages` -> the names."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_seconds(text: str) -> int:
    """Accept `10` or `10s` (wrk's own spelling)."""
    value = int(text.removesuffix("s"))
    if value < 1:
        raise argparse.ArgumentTypeError("duration must be >= 1s")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line; --quick wins over --runs/--duration because it is a smoke test."""
    p = argparse.ArgumentParser(description="Benchmark the gateway against nginx proxy_pass.")
    p.add_argument("--scenario", action="append", metavar="NAME",
                   help="bench/scenarios/NAME.yaml to run (repeatable; default: all)")
    p.add_argument("--duration", type=parse_seconds, default=10, help="seconds per wrk run (10)")
    p.add_argument("--connections", type=parse_connections, default=[50],
                   help="comma list of wrk connection counts for every target (50)")
    p.add_argument("--latency-connections", type=parse_extra_connections, default=[1], metavar="LIST",
                   help="counts for upstream direct, nginx proxy_pass, the floor and the focus scenarios "
                        "only: added latency (1; '' for none)")
    p.add_argument("--pool-connections", type=parse_extra_connections, default=[200], metavar="LIST",
                   help="counts for nginx proxy_pass, the floor and the focus scenarios only: above "
                        "the upstream pool size (200; '' for none)")
    p.add_argument("--focus", type=parse_names, metavar="NAMES",
                   help="scenarios that also get the latency and pool counts "
                        "(default: the --scenario names, else passthrough,all_stages)")
    p.add_argument("--runs", type=int, default=3, help="runs per target and connection count (3)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured wrk per target (2)")
    p.add_argument("--settle", type=float, default=15.0,
                   help="before a rerun, wait up to this many seconds for the machine to be quiet (15)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 run of 3 s, not recorded")
    p.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True,
                   help="include the naive aiohttp proxy row (default on)")
    p.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                   help="include the python floor relay row, bench/floor_relay.py (default on)")
    p.add_argument("--nginx-workers", type=int, default=1,
                   help="workers of the main nginx proxy_pass reference (1); a scenario running another "
                        "number of processes gets an nginx with as many workers in the same round")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=None,
                   help="write the result into docs/performance.md (default: on, off with --quick)")
    p.add_argument("--gateway", type=Path, default=REPO / ".venv" / "bin" / "gateway",
                   help="gateway console script (.venv/bin/gateway)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also dump every run as JSON")
    p.add_argument("--scenarios-dir", type=Path, default=SCENARIOS,
                   help="where NAME.yaml templates live (bench/scenarios); for testing the harness")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.warmup, args.settle = 1, 3, 1, min(args.settle, 5.0)
    if args.record is None:
        args.record = not args.quick
    if args.runs < 1:
        p.error("--runs must be >= 1")
    if args.focus is None:
        args.focus = list(args.scenario or FOCUS_DEFAULT)
    return args


# --------------------------------------------------------------------------- tools


def apt_install(package: str) -> bool:
    """Install one Debian package when we are root; waits for a concurrent apt's lock."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    print(f"  installing {package} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", package]
    for attempt in range(2):
        if attempt:
            subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "update", "-q"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode == 0:
            return True
    print(f"  apt-get install {package} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return False


def find_tool(name: str, install: bool) -> str | None:
    """Locate a binary, also in sbin dirs that a non-login PATH may lack."""
    extra = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"])
    path = os.environ.get("PATH", "") + os.pathsep + extra
    found = shutil.which(name, path=path)
    if found is None and install and apt_install(name):
        found = shutil.which(name, path=path)
    return found


def require_wrk() -> str:
    """wrk is the load generator of the method; without it there is nothing to measure."""
    wrk = find_tool("wrk", install=True)
    if wrk is None:
        raise BenchError("wrk not found on PATH. Install it: apt-get install -y wrk")
    return wrk


def tool_version(argv: list[str]) -> str:
    """First line a tool prints about its version (nginx prints on stderr, wrk exits 1)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def raise_fd_limit() -> None:
    """Many connections need many fds; children inherit the raised soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


# --------------------------------------------------------------------------- /proc


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/PID/stat; the comm field may hold spaces, so split after the last ')'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    close = raw.rindex(b")")
    rest = raw[close + 2:].split()
    comm = raw[raw.index(b"(") + 1:close].decode(errors="replace")
    # rest[i] is field i+3 of proc(5): ppid 4, flags 9, utime..cstime 14-17, starttime 22
    ticks = sum(int(v) for v in rest[11:15])
    return ProcStat(pid, int(rest[1]), bool(int(rest[6]) & PF_KTHREAD), int(rest[19]), ticks, comm)


def snapshot() -> dict[int, ProcStat]:
    """Every process on the machine, so both trees and strangers come from one read."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := read_stat(int(name))) is not None:
            stats[st.pid] = st
    return stats


def tree_pids(root: int, snap: dict[int, ProcStat]) -> set[int]:
    """root and all its descendants (workers, resource trackers, ...)."""
    children: dict[int, list[int]] = {}
    for st in snap.values():
        children.setdefault(st.ppid, []).append(st.pid)
    found, todo = set(), [root] if root in snap else []
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_ticks(root: int, snap: dict[int, ProcStat]) -> int:
    """CPU clock ticks of a whole process tree."""
    return sum(snap[pid].ticks for pid in tree_pids(root, snap))


def tick_delta(pid: int, before: dict[int, ProcStat], after: dict[int, ProcStat]) -> int:
    """Ticks a process used between two snapshots; one born in between counts in full."""
    prev, now = before.get(pid), after.get(pid)
    if now is None:
        return 0
    base = prev.ticks if prev is not None and prev.start == now.start else 0
    return max(0, now.ticks - base)


def others_ticks(before: dict[int, ProcStat], after: dict[int, ProcStat], busy: int, ours: set[int]) -> int:
    """CPU the rest of the machine used during a run.

    Machine busy time (/proc/stat, all but idle, iowait, steal) minus what the measured
    processes and kernel threads used.  Kernel threads are not strangers: on loopback
    they mostly do the benchmark's own network work.  Summing other processes one by
    one would miss short-lived ones (a test run) or, through their parents' cutime,
    charge a whole reaped test run to the few seconds we watched.
    """
    accounted = sum(tick_delta(pid, before, after) for pid, st in after.items() if pid in ours or st.kthread)
    return max(0, busy - accounted)


def busiest_other(before: dict[int, ProcStat], after: dict[int, ProcStat], ours: set[int]) -> str:
    """Name of the non-measured process that used most CPU (reaped children included),
    so a disturbed run says who disturbed it."""
    used = {pid: tick_delta(pid, before, after) for pid, st in after.items()
            if pid not in ours and not st.kthread}
    top = max(used, key=used.__getitem__, default=None)
    return f"{after[top].comm}[{top}]" if top is not None and used[top] > 0 else ""


@dataclass(frozen=True)
class MachineCpu:
    """Aggregate jiffies from the first line of /proc/stat."""

    total: int
    busy: int  # user + nice + system + irq + softirq: per-task times include the latter two here
    steal: int


def machine_cpu() -> MachineCpu:
    """Read the aggregate cpu line of /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq
    return MachineCpu(busy + idle + iowait + steal, busy, steal)


# --------------------------------------------------------------------------- processes


class Processes:
    """Every process the harness starts, so one finally: can stop them all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.live: dict[int, subprocess.Popen] = {}
        self.names: dict[int, str] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        """Start in a new session (own process group) so Ctrl-C reaches only us, and
        so the whole group can be signalled at the end."""
        out, err = self.log_paths(name)
        with out.open("wb") as out_f, err.open("wb") as err_f:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                                    env=env, cwd=cwd, start_new_session=True)
        self.live[proc.pid] = proc
        self.names[proc.pid] = name
        return proc

    def log_paths(self, name: str) -> tuple[Path, Path]:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
        return self.workdir / f"{slug}.out", self.workdir / f"{slug}.err"

    def stderr_of(self, proc: subprocess.Popen, limit: int = 4000) -> str:
        """Tail of a process's stderr (and stdout, where some servers log errors)."""
        out, err = self.log_paths(self.names[proc.pid])
        text = ""
        for path in (err, out):
            if path.exists():
                text += path.read_text(errors="replace")
        return text[-limit:]

    def stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM the group, wait, then SIGKILL the group and any escaped descendant."""
        if self.live.pop(proc.pid, None) is None:
            return
        snap = snapshot()
        escaped = [(pid, snap[pid].start) for pid in tree_pids(proc.pid, snap) if pid != proc.pid]
        signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(STOP_GRACE_S)
        signal_group(proc.pid, signal.SIGKILL)
        for pid, start in escaped:
            st = read_stat(pid)
            if st is not None and st.start == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Newest first: proxies before the upstream they talk to."""
        for proc in reversed(list(self.live.values())):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop pid {proc.pid}: {exc}", file=sys.stderr)


def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """A port the kernel just gave us; a race is possible, callers retry on 'in use'."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_clash(stderr: str) -> bool:
    """Did a start fail only because someone grabbed our port in between?"""
    return "in use" in stderr.lower()


def with_port_retry(start: Callable[[], T], attempts: int = 3) -> T:
    """Retry a start whose failure was a port race; any other failure is final."""
    for attempt in range(attempts):
        try:
            return start()
        except StartError as exc:
            if attempt == attempts - 1 or not port_clash(exc.stderr):
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- HTTP checks


def http_get(address: str, path: str = "/",
             headers: Iterable[str] = ()) -> tuple[int, http.client.HTTPMessage, bytes] | None:
    """(status, headers, body) of one GET, or None while the server is not up."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        hdrs = dict(h.split(":", 1) for h in headers)
        conn.request("GET", path, headers={k.strip(): v.strip() for k, v in hdrs.items()})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def returns_200(address: str, path: str = "/", headers: Iterable[str] = ()) -> bool:
    answer = http_get(address, path, headers)
    return answer is not None and answer[0] == 200


def wait_ready(procs: Processes, proc: subprocess.Popen, name: str, ready: Callable[[], bool]) -> None:
    """Poll until ready; fail fast with stderr if the process dies, or after a timeout."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = procs.stderr_of(proc)
            procs.stop(proc)
            raise StartError(f"{name} exited with status {proc.returncode}", stderr)
        if ready():
            return
        time.sleep(0.1)
    stderr = procs.stderr_of(proc)
    procs.stop(proc)
    raise StartError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s", stderr)


def body_problem(target: Target, expected: bytes) -> str | None:
    """A proxy that is fast because it answers the wrong thing must not look good."""
    answer = http_get(target.address, "/", target.headers)
    if answer is None:
        return "no answer to a sanity GET"
    status, headers, body = answer
    ctype = headers.get("Content-Type", "")
    if status != 200:
        return f"sanity GET returned {status}"
    if body != expected:
        return f"body differs from the upstream's ({len(body)} bytes)"
    if not ctype.startswith("application/json"):
        return f"Content-Type is {ctype!r}"
    return None


def hit_problem(target: Target) -> str | None:
    """A hit row must measure hits: once a GET has filled the entry, the next one must
    say X-Cache: HIT (the gateway sends it, and so does the nginx proxy_cache reference)."""
    answers = [http_get(target.address, "/", target.headers) for _ in range(2)]
    if answers[-1] is None:
        return "no answer to a repeated GET"
    x_cache = answers[-1][1].get("X-Cache")
    return None if x_cache == "HIT" else f"a repeated GET answered X-Cache: {x_cache}, not HIT"


def sum_by_label(metrics: str, counter: re.Pattern[str]) -> dict[str, int]:
    """A counter's samples summed by the one label `counter` captures (over routes, methods...)."""
    counts: dict[str, int] = {}
    for label, value in counter.findall(metrics):
        counts[label] = counts.get(label, 0) + int(float(value))
    return counts


def read_cache_counts(admin: str) -> dict[str, int]:
    """gateway_cache_requests_total by result, summed over routes, from the admin /metrics."""
    answer = http_get(admin, "/metrics")
    if answer is None or answer[0] != 200:
        raise RuntimeError(f"could not read the cache counters from http://{admin}/metrics")
    return sum_by_label(answer[2].decode(errors="replace"), CACHE_COUNTER)


def read_status_counts(admin: str) -> dict[str, int] | None:
    """gateway_requests_total by status code from the admin /metrics; None when
    unreadable, since it only explains a row's non-2xx column and must not fail a run."""
    answer = http_get(admin, "/metrics")
    if answer is None or answer[0] != 200:
        return None
    return sum_by_label(answer[2].decode(errors="replace"), STATUS_COUNTER)


def status_growth(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    """Non-2xx answers counted between two readings, by code (None if either is missing)."""
    if before is None or after is None:
        return None
    grown = {code: n - before.get(code, 0) for code, n in after.items() if not code.startswith("2")}
    return {code: n for code, n in sorted(grown.items()) if n > 0}


def describe_statuses(statuses: Iterable[dict[str, int] | None]) -> str:
    """`503: 6718, 429: 2` summed over runs, most frequent first ('' when none known)."""
    total: dict[str, int] = {}
    for counts in statuses:
        for code, n in (counts or {}).items():
            total[code] = total.get(code, 0) + n
    return ", ".join(f"{code}: {n}" for code, n in sorted(total.items(), key=lambda item: (-item[1], item[0])))


# --------------------------------------------------------------------------- servers


def json_body() -> bytes:
    """A fixed 303-byte JSON menu item (the size BENCH.md figures were taken with).

    It goes inside an nginx single-quoted string, so it must hold no ', \\ or $.
    """
    item = {"id": 1, "title": "Greek Salad", "price": "12.50", "inventory": 42,
            "featured": True, "category": {"id": 2, "slug": "salads", "title": "Salads"},
            "description": ""}
    filler = "Crisp lettuce, cucumber, tomato, red onion, kalamata olives and feta. "
    pad = BODY_SIZE - len(json.dumps(item, separators=(",", ":")))
    item["description"] = (filler * 10)[:pad]
    body = json.dumps(item, separators=(",", ":")).encode()
    assert len(body) == BODY_SIZE and not set(b"'\\$") & set(body), body
    return body


def nginx_conf(prefix: Path, workers: int, http_block: str) -> str:
    """Everything nginx needs inside its own prefix (no /var/log, no /var/lib).

    keepalive_requests is raised everywhere so that neither wrk's connections nor a
    proxy's upstream pool are closed every 1000 requests (nginx's default), which would
    charge reconnects to whichever target happens to be measured.
    """
    return f"""
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http_block}
}}
"""


def upstream_block(port: int, body: bytes) -> str:
    """The fixed upstream: one worker answers from memory."""
    return f"""
    server {{
        listen {HOST}:{port};
        default_type application/json;
        location / {{ return 200 '{body.decode()}'; }}
    }}"""


def proxy_block(port: int, upstream: str, cache_dir: Path | None = None) -> str:
    """The reference proxy, configured exactly as BENCH.md says; with cache_dir, the
    same proxy with proxy_cache in front of it (the reference for the cache-hit rows).

    The cache keeps 200s for 1h, so after the first request every request is a hit;
    X-Cache tells the harness so, as the gateway's own X-Cache does.
    """
    cache_path, cache = "", ""
    if cache_dir is not None:
        cache_path = f"\n    proxy_cache_path {cache_dir} keys_zone=bench_cache:1m;"
        cache = """
            proxy_cache bench_cache;
            proxy_cache_valid 200 1h;
            add_header X-Cache $upstream_cache_status;"""
    return f"""
    upstream bench_upstream {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}{cache_path}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";{cache}
        }}
    }}"""


def start_nginx(procs: Processes, nginx: str, name: str, workers: int,
                block: Callable[[int, Path], str]) -> tuple[subprocess.Popen, str]:
    """Start one nginx in its own prefix dir and wait until it answers 200.

    block(port, prefix) is its http-level config; anything it keeps on disk (a
    proxy_cache) goes under the prefix, which is removed with the workdir.
    """

    def attempt() -> tuple[subprocess.Popen, str]:
        port = free_port()
        prefix = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=procs.workdir))
        prefix.chmod(0o755)  # workers drop to 'nobody' and create temp dirs here
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_conf(prefix, workers, block(port, prefix)))
        argv = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
        proc = procs.start(name, argv)
        address = f"{HOST}:{port}"
        try:
            wait_ready(procs, proc, name, lambda: returns_200(address))
        except StartError as exc:
            log = prefix / "error.log"
            exc.stderr += log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise
        return proc, address

    return with_port_retry(attempt)


def start_python_server(procs: Processes, name: str, script: str, args: list[str]) -> tuple[subprocess.Popen, str]:
    """Start one of our aiohttp helpers with this interpreter (the venv's)."""

    def attempt() -> tuple[subprocess.Popen, str]:
        address = f"{HOST}:{free_port()}"
        proc = procs.start(name, [sys.executable, str(BENCH / script), "--listen", address, *args])
        wait_ready(procs, proc, name, lambda: returns_200(address))
        return proc, address

    return with_port_retry(attempt)


def start_upstream(procs: Processes, nginx: str | None, body: bytes) -> Target:
    """nginx `return 200` upstream, or the aiohttp fallback (said loudly)."""
    if nginx is not None:
        proc, address = start_nginx(procs, nginx, "upstream-nginx", 1, lambda port, _: upstream_block(port, body))
    else:
        print("WARNING: nginx unavailable; falling back to an aiohttp upstream "
              "(bench/json_upstream.py). It is slower and costs more CPU than nginx: "
              "figures are NOT comparable with BENCH.md, and there is no nginx reference row.")
        body_file = procs.workdir / "body.json"
        body_file.write_bytes(body)
        proc, address = start_python_server(procs, "upstream-aiohttp", "json_upstream.py",
                                            ["--body-file", str(body_file)])
    return Target(UPSTREAM_LABEL, address, proc.pid)


# --------------------------------------------------------------------------- gateway


def load_scenarios(directory: Path, names: list[str] | None) -> list[Scenario]:
    """DIR/NAME.yaml (+ optional NAME.headers); unknown names are an error."""
    available = {p.stem: p for p in sorted(directory.glob("*.yaml"))}
    wanted = names or list(available)
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise BenchError(f"unknown scenario(s) {', '.join(unknown)}; "
                         f"available: {', '.join(available) or 'none'}")
    return [Scenario(n, available[n].read_text(), read_headers(available[n].with_suffix(".headers")))
            for n in wanted]


def read_headers(path: Path) -> list[str]:
    """`Name: value` lines for wrk -H; blank lines and # comments are skipped."""
    if not path.exists():
        return []
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    headers = [ln for ln in lines if ln and not ln.startswith("#")]
    bad = [h for h in headers if ":" not in h]
    if bad:
        raise BenchError(f"{path}: expected 'Name: value' lines, got {bad}")
    return headers


def render_scenario(template: str, values: dict[str, str]) -> str:
    """Substitute only our placeholders; any other ${NAME} is left for the gateway's env expansion."""
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def start_redis(procs: Processes) -> tuple[subprocess.Popen, str]:
    """A redis-server without persistence, for scenarios that write ${REDIS}."""
    server = find_tool("redis-server", install=True)
    if server is None:
        raise StartError("redis-server not found on PATH (apt-get install -y redis-server)")

    def attempt() -> tuple[subprocess.Popen, str]:
        port = free_port()
        proc = procs.start("redis", [server, "--port", str(port), "--bind", HOST, "--save", "",
                                     "--appendonly", "no", "--dir", str(procs.workdir)])
        wait_ready(procs, proc, "redis-server", lambda: redis_pong(port))
        return proc, f"{HOST}:{port}"

    return with_port_retry(attempt)


def redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


SERVICES: dict[str, Callable[[Processes], tuple[subprocess.Popen, str]]] = {"REDIS": start_redis}
"""Placeholders a scenario may write besides LISTEN/ADMIN/UPSTREAM, each filled with
the host:port of a service started once for every scenario that names it; the
service's CPU is charged to the scenario's row (it is part of what is measured)."""


def gateway_processes(scenario: Scenario) -> int | None:
    """server.workers of a scenario, to warn when CPU budgets differ from nginx's."""
    server = scenario.config().get("server") or {}
    workers = server.get("workers", 1) if isinstance(server, dict) else None
    return os.cpu_count() if workers == "auto" else workers if isinstance(workers, int) else None


def start_services(procs: Processes, scenario: Scenario,
                   running: dict[str, tuple[subprocess.Popen, str]]) -> dict[str, tuple[subprocess.Popen, str]]:
    """The SERVICES a scenario's template names, started on first use and shared."""
    wanted = set(re.findall(r"\$\{([A-Z_]+)\}", scenario.template)) & SERVICES.keys()
    for name in sorted(wanted - running.keys()):
        running[name] = SERVICES[name](procs)
        print(f"  {name.lower()} on {running[name][1]}")
    return {name: running[name] for name in wanted}


def access_log_path(workdir: Path, scenario: Scenario) -> Path | None:
    """Where a scenario that writes ${ACCESS_LOG} logs to: a file in the round's
    temporary directory (removed with it), one per scenario."""
    return workdir / f"access-{scenario.name}.log" if "${ACCESS_LOG}" in scenario.template else None


def start_gateway(procs: Processes, gateway: Path, scenario: Scenario, upstream: str,
                  services: dict[str, tuple[subprocess.Popen, str]], reference: str = NGINX_LABEL,
                  focus: bool = False) -> Target:
    """Generate the scenario's config and wait for /healthz and a 200 through the gateway."""
    label = f"gateway: {scenario.name}"
    log_file = access_log_path(procs.workdir, scenario)

    def attempt() -> Target:
        values = {"LISTEN": f"{HOST}:{free_port()}", "ADMIN": f"{HOST}:{free_port()}", "UPSTREAM": upstream,
                  **{name: address for name, (_, address) in services.items()},
                  **({"ACCESS_LOG": str(log_file)} if log_file is not None else {})}
        conf = procs.workdir / f"gateway-{scenario.name}.yaml"
        conf.write_text(render_scenario(scenario.template, values))
        env = {**os.environ, **values, "PYTHONUNBUFFERED": "1"}
        proc = procs.start(f"gateway-{scenario.name}", [str(gateway), "run", "-c", str(conf)], env=env, cwd=REPO)
        wait_ready(procs, proc, label, lambda: returns_200(values["ADMIN"], "/healthz")
                   and returns_200(values["LISTEN"], "/", scenario.headers))
        return Target(label, values["LISTEN"], proc.pid, list(scenario.headers),
                      helper_pids=[service.pid for service, _ in services.values()], hit_path=scenario.caches,
                      cache_counts=functools.partial(read_cache_counts, values["ADMIN"]) if scenario.caches else None,
                      reference=reference, latency=focus, pool=focus, access_log=log_file,
                      status_counts=functools.partial(read_status_counts, values["ADMIN"]))

    return with_port_retry(attempt)


def start_gateways(procs: Processes, gateway: Path, scenarios: list[Scenario], upstream: str,
                   nginx_workers: int, focus: set[str] = frozenset()) -> tuple[list[Target], list[str]]:
    """Every scenario that starts; one that fails is reported (with stderr) and skipped.
    Each is compared with nginx running as many workers as it runs processes."""
    if not scenarios:
        return [], []
    if not gateway.exists():
        print(f"SKIP gateway scenarios ({', '.join(s.name for s in scenarios)}): "
              f"{gateway} does not exist (install the package into .venv first)")
        return [], []
    targets, failed = [], []
    running: dict[str, tuple[subprocess.Popen, str]] = {}
    for scenario in scenarios:
        reference = reference_label(gateway_processes(scenario) or nginx_workers, nginx_workers)
        try:
            services = start_services(procs, scenario, running)
            targets.append(start_gateway(procs, gateway, scenario, upstream, services, reference,
                                         scenario.name in focus))
            print(f"  started gateway scenario {scenario.name} on {targets[-1].address}")
        except StartError as exc:
            failed.append(scenario.name)
            print(f"FAILED to start gateway scenario {scenario.name}: {exc}\n"
                  f"----- gateway stderr -----\n{exc.stderr.rstrip()}\n--------------------------")
    return targets, failed


# --------------------------------------------------------------------------- wrk


LUA_REPORT = r"""
-- Printed once at the end: one machine-readable line, robust against wrk's text format.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max))
end
"""


def run_wrk(settings: Settings, target: Target, connections: int, duration: int) -> WrkResult:
    """One wrk run, one thread (BENCH.md: two changed nothing), killed if it hangs."""
    argv = [settings.wrk, "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(settings.lua)]
    for header in target.headers:
        argv += ["-H", header]
    argv.append(f"http://{target.address}/")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        out, err = proc.communicate(timeout=duration + 30)
    finally:
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            return WrkResult(**json.loads(line.removeprefix("WRKJSON ")))
    raise RuntimeError(f"wrk printed no report (exit {proc.returncode}): {(err or out).strip()[-500:]}")


# --------------------------------------------------------------------------- measuring


def file_size(path: Path) -> int:
    """Bytes in a file; 0 before it exists."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def count_lines(path: Path, offset: int) -> int:
    """Newlines written to a file after `offset` (read in blocks: the log grows by MBs)."""
    lines = 0
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        f.seek(offset)
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def lines_logged(path: Path, offset: int, requests: int, wait_s: float = ACCESS_LOG_WAIT_S) -> int:
    """Lines appended since `offset`, once there are at least `requests` of them or
    `wait_s` has passed: the gateway writes its log in batches, so the last lines of
    a run land a little after wrk stops."""
    deadline = time.monotonic() + wait_s
    while (lines := count_lines(path, offset)) < requests and time.monotonic() < deadline:
        time.sleep(0.05)
    return lines


def measure_once(settings: Settings, target: Target, upstream: Target, connections: int, run: int) -> RunResult:
    """One wrk run with the target's CPU, steal and strangers (and its cache counters
    and access log) read around it."""
    counts0 = target.cache_counts() if target.cache_counts else None
    log0 = file_size(target.access_log) if target.access_log else None
    statuses0 = target.status_counts() if target.status_counts else None
    before, cpu0, t0 = snapshot(), machine_cpu(), time.monotonic()
    wrk = run_wrk(settings, target, connections, settings.duration)
    wall, cpu1, after = time.monotonic() - t0, machine_cpu(), snapshot()
    counts1 = target.cache_counts() if target.cache_counts else None
    statuses1 = target.status_counts() if target.status_counts else None
    logged = lines_logged(target.access_log, log0, wrk.requests) if target.access_log and log0 is not None else None
    ours = {os.getpid()}  # wrk is our child: reaped, its CPU is in our cutime
    roots = (target.root_pid, *target.helper_pids)
    for root in (*roots, upstream.root_pid):
        ours |= tree_pids(root, before) | tree_pids(root, after)
    cpu_ticks = sum(tree_ticks(root, after) - tree_ticks(root, before) for root in roots)
    others = others_ticks(before, after, cpu1.busy - cpu0.busy, ours)
    return RunResult(
        label=target.label, connections=connections, run=run, rps=wrk.rps,
        p50_us=wrk.p50_us, p99_us=wrk.p99_us,
        cpu_us_per_request=cpu_ticks * 1e6 / CLK_TCK / wrk.requests if wrk.requests else None,
        non_2xx=wrk.status, socket_errors=wrk.socket_errors,
        steal_pct=100.0 * (cpu1.steal - cpu0.steal) / max(1, cpu1.total - cpu0.total),
        others_pct_of_core=100.0 * others / CLK_TCK / wall, busiest_other=busiest_other(before, after, ours),
        requests=wrk.requests,
        cache=None if counts0 is None or counts1 is None else {k: n - counts0.get(k, 0) for k, n in counts1.items()},
        logged=logged, statuses=status_growth(statuses0, statuses1),
    )


def not_hits(r: RunResult) -> str | None:
    """Why a run of a hit row measured more than hits (None when every request was a hit).
    Hits may exceed wrk's count by the requests still in flight when wrk stopped."""
    if r.cache is None or r.failed:
        return None
    hits = r.cache.get("hit", 0)
    others = [f"{n} {result}" for result, n in sorted(r.cache.items()) if result != "hit" and n]
    if hits >= r.requests and not others:
        return None
    return ", ".join([f"{hits} hits for {r.requests} requests", *others])


def not_logged(r: RunResult) -> str | None:
    """Why a run of an access-log row did not log every request (None when it did).
    Lines may exceed wrk's count by the requests still in flight when wrk stopped."""
    if r.logged is None or r.failed or r.logged >= r.requests:
        return None
    return f"{r.logged} log lines for {r.requests} requests"


def disturbed(result: RunResult) -> bool:
    """BENCH.md's rule for a run that cannot be trusted."""
    return result.steal_pct > STEAL_LIMIT_PCT or result.others_pct_of_core > OTHERS_LIMIT_PCT


def wait_for_quiet(limit_s: float) -> None:
    """Before a rerun, give a neighbour's burst (a test run, say) up to limit_s to end:
    a rerun started straight into the same burst is disturbed again.  Quiet = the whole
    machine busy less than the strangers' limit for one second (our targets are idle)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = machine_cpu()
        time.sleep(1.0)
        if (machine_cpu().busy - before.busy) / CLK_TCK * 100.0 < OTHERS_LIMIT_PCT:
            return


def measure(settings: Settings, target: Target, upstream: Target, connections: int, run: int) -> RunResult:
    """Measure; rerun once when disturbed, keep the rerun, and mark it."""
    try:
        result = measure_once(settings, target, upstream, connections, run)
        if disturbed(result):
            first = asdict(result)
            wait_for_quiet(settings.settle)
            result = measure_once(settings, target, upstream, connections, run)
            result.rerun, result.noisy, result.first_attempt = True, disturbed(result), first
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result = RunResult(target.label, connections, run, 0.0, 0.0, 0.0, None, 0, 0, 0.0, 0.0,
                           failed=str(exc))
    print(progress_line(result, settings.runs), flush=True)
    return result


def progress_line(r: RunResult, runs: int) -> str:
    """One line per run so a long round shows that it is alive and how clean it is."""
    head = f"  run {r.run + 1}/{runs} c{r.connections:<4} {r.label:<28}"
    if r.failed:
        return f"{head} FAILED: {r.failed}"
    cpu = f"{r.cpu_us_per_request:6.1f}" if r.cpu_us_per_request is not None else "     ?"
    flags = ""
    if r.first_attempt:
        first = r.first_attempt
        flags += (f" RERUN (1st: steal {first['steal_pct']:.1f}%, others {first['others_pct_of_core']:.1f}%"
                  f"{', busiest ' + first['busiest_other'] if first['busiest_other'] else ''})")
    flags += " NOISY" if r.noisy else ""
    if r.cache is not None:
        flags += f" hits={r.cache.get('hit', 0)}/{r.requests}"
        flags += f" NOT-ALL-HITS ({problem})" if (problem := not_hits(r)) else ""
    if r.logged is not None:
        flags += f" logged={r.logged}/{r.requests}"
        flags += f" LOG-SHORT ({problem})" if (problem := not_logged(r)) else ""
    flags += f" non-2xx={r.non_2xx}" if r.non_2xx else ""
    flags += f" ({codes})" if r.non_2xx and (codes := describe_statuses([r.statuses])) else ""
    flags += f" sock-err={r.socket_errors}" if r.socket_errors else ""
    return (f"{head} {r.rps:9.0f} rps  p50 {r.p50_us / 1000:7.3f} ms  p99 {r.p99_us / 1000:7.3f} ms"
            f"  cpu {cpu} us/req  steal {r.steal_pct:4.1f}%  others {r.others_pct_of_core:5.1f}%{flags}")


def rotated(items: list[T], by: int) -> list[T]:
    """Start each run with a different target so no target always follows the same one."""
    k = by % len(items)
    return items[k:] + items[:k]


def connection_plan(targets: list[Target], settings: Settings) -> dict[str, list[int]]:
    """label -> the connection counts the target is measured at.

    Every target runs at the throughput counts; a target marked latency (pool) also at
    the latency (above-pool) counts. A reference then runs at every count a target
    that divides by it runs at, so that each row has its same-run ratio.
    """
    plan = {}
    for t in targets:
        plan[t.label] = {*settings.connections, *(settings.latency if t.latency else ()),
                         *(settings.pool if t.pool else ())}
    grew = True
    while grew:  # until settled: a reference has a reference of its own (nginx 2 workers -> 1)
        grew = False
        for t in targets:
            for reference in (t.reference, NGINX_CACHE_LABEL if t.hit_path else None):
                if reference in plan and not plan[t.label] <= plan[reference]:
                    plan[reference] |= plan[t.label]
                    grew = True
    return {label: sorted(counts) for label, counts in plan.items()}


def plan_counts(plan: dict[str, list[int]]) -> list[int]:
    """Every connection count of a round, ascending."""
    return sorted({c for counts in plan.values() for c in counts})


def run_round(settings: Settings, targets: list[Target], upstream: Target,
              plan: dict[str, list[int]]) -> list[RunResult]:
    """ONE round: for each run and connection count, every target planned at it in turn."""
    results = []
    for run in range(settings.runs):
        for connections in plan_counts(plan):
            for target in rotated([t for t in targets if connections in plan[t.label]], run):
                if alive(target):
                    results.append(measure(settings, target, upstream, connections, run))
                elif "process died" not in target.problems:
                    target.problems.append("process died")
                    print(f"  {target.label}: process died, skipping its remaining runs")
    return results


def alive(target: Target) -> bool:
    """Has the target's root process not exited (zombies count as dead)?"""
    try:
        return Path(f"/proc/{target.root_pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def warm_up(settings: Settings, targets: list[Target], plan: dict[str, list[int]]) -> None:
    """Unmeasured load first, at each target's most connections, so pools are full and
    lazy imports are done."""
    if settings.warmup <= 0:
        return
    for target in targets:
        try:
            run_wrk(settings, target, max(plan[target.label]), settings.warmup)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"  warm-up of {target.label} failed: {exc}")


# --------------------------------------------------------------------------- summary


@dataclass
class Row:
    """Medians over the runs of one target at one connection count."""

    label: str
    connections: int
    rps: float | None
    p50_us: float | None
    p99_us: float | None
    ratio: float | None
    cache_ratio: float | None
    """RPS over nginx proxy_cache hits of the same run: hit rows only."""
    cpu_us: float | None
    non_2xx: int
    socket_errors: int
    marks: list[str]


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def same_run_rps(results: list[RunResult], label: str) -> dict[tuple[int, int], float]:
    """A reference's RPS by (run, connections), to divide the other targets' runs by."""
    return {(r.run, r.connections): r.rps for r in results if r.label == label and not r.failed and r.rps > 0}


def same_run_ratio(ok: list[RunResult], reference: dict[tuple[int, int], float]) -> float | None:
    """Median over runs of RPS / the reference's RPS in that same run."""
    return median(r.rps / reference[(r.run, r.connections)] for r in ok if (r.run, r.connections) in reference)


def summarise(targets: list[Target], results: list[RunResult], plan: dict[str, list[int]]) -> list[Row]:
    """Medians per (target, connections) the plan measured; ratios are medians of
    same-run ratios, to the target's nginx proxy_pass reference (as many workers as
    it has processes) for every row and to nginx proxy_cache hits for hit rows."""
    proxy_cache = same_run_rps(results, NGINX_CACHE_LABEL)
    references = {t.reference: same_run_rps(results, t.reference) for t in targets}
    rows = []
    for c in plan_counts(plan):
        for target in targets:
            if c not in plan.get(target.label, ()):
                continue
            runs = [r for r in results if r.label == target.label and r.connections == c]
            ok = [r for r in runs if not r.failed]
            rows.append(Row(
                target.label, c,
                median(r.rps for r in ok), median(r.p50_us for r in ok), median(r.p99_us for r in ok),
                same_run_ratio(ok, references[target.reference]),
                same_run_ratio(ok, proxy_cache) if target.hit_path else None,
                median(r.cpu_us_per_request for r in ok),
                sum(r.non_2xx for r in runs), sum(r.socket_errors for r in runs),
                row_marks(target, runs),
            ))
    return rows


def row_marks(target: Target, runs: list[RunResult]) -> list[str]:
    """r = a run was rerun; ! = still disturbed after its rerun; BAD = errors or wrong answers."""
    marks = []
    if any(r.rerun for r in runs):
        marks.append("r")
    if any(r.noisy for r in runs):
        marks.append("!")
    bad = list(target.problems)
    bad += [f"run failed: {r.failed}" for r in runs if r.failed]
    if any(r.non_2xx for r in runs):
        codes = describe_statuses(r.statuses for r in runs)
        bad.append(f"non-2xx responses ({codes})" if codes else "non-2xx responses")
    if any(r.socket_errors for r in runs):
        bad.append("socket errors")
    if any(not_hits(r) for r in runs):
        bad.append("requests that were not cache hits")
    if any(not_logged(r) for r in runs):
        bad.append("requests missing from the access log")
    if not runs:
        bad.append("not measured")
    if bad:
        marks.append("BAD (" + "; ".join(dict.fromkeys(bad)) + ")")
    return marks


COLUMNS = ["target", "conns", "RPS", "p50 ms", "p99 ms", "× nginx", "× cache", "CPU µs/req", "non-2xx", "sock err",
           "marks"]


def row_cells(row: Row) -> list[str]:
    """Formatted cells; p99 at one connection is bracketed (mostly VM jitter, BENCH.md)."""
    def num(v: float | None, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    p99 = num(None if row.p99_us is None else row.p99_us / 1000, ".3f")
    return [row.label, str(row.connections), num(row.rps, ",.0f"),
            num(None if row.p50_us is None else row.p50_us / 1000, ".3f"),
            f"({p99})" if row.connections == 1 and row.p99_us is not None else p99,
            num(row.ratio, ".2f"), num(row.cache_ratio, ".2f"), num(row.cpu_us, ".1f"),
            str(row.non_2xx), str(row.socket_errors), " ".join(row.marks)]


def text_table(rows: list[Row]) -> str:
    """Aligned plain-text table for the terminal."""
    cells = [COLUMNS] + [row_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = []
    for n, line in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i in (0, len(COLUMNS) - 1) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """GitHub Markdown table for docs/performance.md."""
    align = ["---"] + ["---:"] * (len(COLUMNS) - 2) + ["---"]
    lines = ["| " + " | ".join(COLUMNS) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


LEGEND = ("`× nginx`, `× cache`: RPS over nginx proxy_pass (with as many workers as the target has "
          "processes; an nginx with other workers is over the main one), over nginx proxy_cache hits "
          "(hit rows only), in the same run. Marks: `r` a run was disturbed (steal > 5 % of the machine "
          "or other processes > 20 % of a core) and was rerun once; `!` the rerun was disturbed too; "
          "`BAD` errors or a wrong answer, do not trust the row. p99 at 1 connection is bracketed: it is "
          "mostly VM jitter.")


RATIO_NOISE = 0.05
"""BENCH.md: same-round ratios moved by less than this between sets: a smaller
difference between two ratios is no difference."""


def checks(rows: list[Row], targets: list[Target], throughput: int) -> list[str]:
    """Issue 10's comparisons between rows of one table, in words.

    - Above the pool: each row measured at more connections than the throughput
      count, its p99 over the same target's p99 at the throughput count (no collapse
      = within P99_GROWTH_LIMIT).
    - Workers: a gateway running N > 1 processes, its ratio to nginx with N workers
      against pass-through's ratio to nginx with as many workers as it has (the
      issue asks for the same ratio or better).
    """
    by = {(r.label, r.connections): r for r in rows}
    lines = []
    for r in rows:
        base = by.get((r.label, throughput))
        if r.connections > throughput and base is not None and r.p99_us and base.p99_us:
            growth = r.p99_us / base.p99_us
            verdict = "within" if growth <= P99_GROWTH_LIMIT else "OVER"
            lines.append(f"{r.label}: p99 at {r.connections} connections {r.p99_us / 1000:.1f} ms = {growth:.1f}x "
                         f"its p99 at {throughput} ({verdict} {P99_GROWTH_LIMIT:g}x)")
    single = next((t for t in targets if t.label == PASSTHROUGH_LABEL), None)
    one = by.get((PASSTHROUGH_LABEL, throughput))
    for t in targets:
        row = by.get((t.label, throughput))
        if single is None or t.reference == single.reference or not t.label.startswith("gateway: ") or row is None:
            continue
        if row.ratio is None or one is None or one.ratio is None:
            continue
        verdict = "same or better" if row.ratio >= one.ratio - RATIO_NOISE else "WORSE"
        lines.append(f"{t.label}: {row.ratio:.2f}x {t.reference} at {throughput} connections, against "
                     f"{PASSTHROUGH_LABEL} {one.ratio:.2f}x {single.reference} ({verdict})")
    return lines


# --------------------------------------------------------------------------- recording


def machine_description() -> str:
    """nproc, CPU model, kernel and OS: the context that makes a figure comparable."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    debian = Path("/etc/debian_version")
    os_name = f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform()
    return f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, {os_name}"


def versions(nginx: str | None, wrk: str) -> str:
    """Tool and library versions; aiohttp's is read from metadata (no import needed)."""
    parts = [tool_version([nginx, "-v"]).removeprefix("nginx version: ") if nginx
             else "nginx: none (aiohttp fallback upstream)",
             tool_version([wrk, "-v"]).split(" Copyright")[0], f"Python {platform.python_version()}"]
    for dist in ("aiohttp", "uvloop"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def git_revision() -> str:
    """Commit under test (+dirty), because the doc outlives the working tree."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "no commit yet"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + (" (uncommitted changes)" if dirty.stdout.strip() else "")


def command_line() -> str:
    """The exact command, with paths relative to the repository root when they are inside it."""
    def rel(path: str) -> str:
        try:
            return str(Path(path).absolute().relative_to(REPO))
        except ValueError:
            return path

    return shlex.join([rel(sys.executable), rel(sys.argv[0]), *sys.argv[1:]])


def generated_section(rows: list[Row], results: list[RunResult], settings: Settings, context: dict) -> str:
    """The block between the markers; everything else in the doc is hand-written."""
    reruns = sum(r.rerun for r in results)
    noisy = sum(r.noisy for r in results)
    steal = median(r.steal_pct for r in results if not r.failed)
    return "\n".join([
        DOC_BEGIN,
        "<!-- generated by bench/run.py: edits between these markers are overwritten -->",
        "",
        f"### Latest run: {context['date']}",
        "",
        f"- Command: `{context['command']}`",
        f"- Machine: {context['machine']}",
        f"- Tools: {context['versions']}",
        f"- Code: {context['revision']}",
        f"- Method: `wrk -t1 -d{settings.duration}s`, {context['connections']}, "
        f"median of {settings.runs} run(s), targets alternating in one round; upstream: {context['upstream']}",
        f"- Contention: median steal {0.0 if steal is None else steal:.1f} %, "
        f"{reruns} of {len(results)} runs rerun, {noisy} still disturbed after rerun",
        *([f"- Note: {n}" for n in context.get("notes", [])]),
        *([f"- Check: {c}" for c in context.get("checks", [])]),
        "",
        markdown_table(rows),
        "",
        LEGEND,
        DOC_END,
    ])


def describe_connections(settings: Settings, focus: Iterable[str]) -> str:
    """The connection plan in words, for the terminal and the recorded method line."""
    def counts(values: list[int]) -> str:
        return ",".join(map(str, values))

    text = f"connections {counts(settings.connections)} for every target"
    if settings.latency:
        text += f"; {counts(settings.latency)} (latency) for " + ", ".join(
            ["upstream direct, nginx proxy_pass, the floor", *focus])
    if settings.pool:
        text += f"; {counts(settings.pool)} (above the upstream pool) for nginx proxy_pass, the floor and " \
                f"{', '.join(focus) or 'no scenario'}"
    return text


def estimate_seconds(plan: dict[str, list[int]], settings: Settings) -> int:
    """How long a round takes without reruns: every planned run plus warm-ups (wrk's
    start and the /proc reads add about a second per run)."""
    runs = settings.runs * sum(len(counts) for counts in plan.values())
    return runs * (settings.duration + 1) + len(plan) * (settings.warmup + 1)


def record(section: str) -> None:
    """Replace the generated section of docs/performance.md, or append one."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(DOC_END):]
    else:
        text = text.rstrip("\n") + "\n\n## Latest results\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"recorded in {DOC.relative_to(REPO)}")


# --------------------------------------------------------------------------- main


def start_targets(procs: Processes, args: argparse.Namespace, nginx: str | None, body: bytes,
                  scenarios: list[Scenario], notes: list[str]) -> tuple[Target, list[Target], list[str]]:
    """Upstream, nginx references, the floor relay, naive proxy and gateways, each
    checked for the right answer."""
    upstream = start_upstream(procs, nginx, body)
    print(f"  upstream on {upstream.address}")
    upstream.latency = True
    targets = [upstream]
    if nginx is not None:
        main = start_reference(procs, nginx, args.nginx_workers, upstream.address, cached=False)
        main.latency = main.pool = True
        targets.append(main)
        for workers in extra_reference_workers(scenarios, args.nginx_workers):
            targets.append(start_reference(procs, nginx, workers, upstream.address, cached=False,
                                           label=reference_label(workers, args.nginx_workers)))
        if any(scenario.caches for scenario in scenarios):
            targets.append(start_reference(procs, nginx, args.nginx_workers, upstream.address, cached=True))
    else:
        notes.append("no nginx: no reference row, ratios are blank")
    # The floor is a reference at every count; the naive proxy only at the throughput
    # count: its added latency says nothing the floor's does not, and a round has
    # 15 minutes to spend.
    helpers = [(args.floor, FLOOR_LABEL, "floor-relay", "floor_relay.py", True),
               (args.naive, NAIVE_LABEL, "naive-proxy", "naive_proxy.py", False)]
    for wanted, label, name, script, reference in helpers:
        if not wanted:
            continue
        try:
            proc, address = start_python_server(procs, name, script, ["--upstream", upstream.address])
            targets.append(Target(label, address, proc.pid, latency=reference, pool=reference))
            print(f"  {label} on {address}")
        except StartError as exc:
            print(f"FAILED to start the {label}: {exc}\n{exc.stderr.rstrip()}")
    gateways, failed = start_gateways(procs, args.gateway, scenarios, upstream.address, args.nginx_workers,
                                      set(args.focus))
    targets += gateways
    for target in targets:
        problem = body_problem(target, body)
        if problem is None and target.hit_path:
            problem = hit_problem(target)
        if problem is not None:
            target.problems.append(problem)
            print(f"WARNING: {target.label}: {problem}")
    return upstream, targets, failed


def reference_label(workers: int, main_workers: int) -> str:
    """The nginx proxy_pass row a target with `workers` processes is compared with:
    the main reference (--nginx-workers), or one started with as many workers."""
    if workers == main_workers:
        return NGINX_LABEL
    return f"{NGINX_LABEL}, {workers} worker{'s' if workers != 1 else ''}"


def extra_reference_workers(scenarios: list[Scenario], main_workers: int) -> list[int]:
    """Worker counts the round needs an nginx proxy_pass for, besides the main one,
    so that every gateway row is compared with an equal CPU budget (BENCH.md)."""
    counts = {gateway_processes(scenario) for scenario in scenarios}
    return sorted(n for n in counts if n is not None and n != main_workers)


def start_reference(procs: Processes, nginx: str, workers: int, upstream: str, cached: bool,
                    label: str | None = None) -> Target:
    """nginx proxy_pass, or (cached) the same nginx serving proxy_cache hits: each
    gateway row is compared with the nginx doing the same job in the same round.
    An extra proxy_pass reference (another worker count) is compared with the main one."""
    label, name = (NGINX_CACHE_LABEL, "nginx-cache") if cached else (label or NGINX_LABEL, "nginx-proxy")
    if label != NGINX_LABEL and not cached:
        name = f"nginx-proxy-{workers}w"

    def block(port: int, prefix: Path) -> str:
        return proxy_block(port, upstream, prefix / "cache" if cached else None)

    proc, address = start_nginx(procs, nginx, name, workers, block)
    print(f"  {label} on {address}")
    return Target(label, address, proc.pid, hit_path=cached)


def run_benchmark(args: argparse.Namespace, wrk: str, scenarios: list[Scenario], procs: Processes) -> int:
    """Start everything, run one round, print, record. Exit 1 if anything was bad."""
    lua = procs.workdir / "report.lua"
    lua.write_text(LUA_REPORT)
    settings = Settings(wrk, args.duration, args.connections, args.runs, args.warmup, lua, args.settle,
                        args.latency_connections, args.pool_connections)
    notes: list[str] = []
    nginx = find_tool("nginx", install=True)
    body = json_body()
    print("starting targets ...", flush=True)
    upstream, targets, failed = start_targets(procs, args, nginx, body, scenarios, notes)
    notes += [f"gateway scenario {name} failed to start (not measured)" for name in failed]
    plan = connection_plan(targets, settings)
    focus = [t.label.removeprefix("gateway: ") for t in targets if t.label.startswith("gateway: ") and t.latency]
    connections = describe_connections(settings, focus)
    print(f"measuring {len(targets)} targets, {connections}, {settings.runs} run(s) of {settings.duration}s "
          f"(about {estimate_seconds(plan, settings) // 60 + 1} min) ...", flush=True)
    warm_up(settings, targets, plan)
    results = run_round(settings, targets, upstream, plan)
    rows = summarise(targets, results, plan)
    found = checks(rows, targets, max(settings.connections))
    print()
    print(text_table(rows))
    print(LEGEND)
    for line in found:
        print(f"check: {line}")
    for note in notes:
        print(f"note: {note}")
    context = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(), "machine": machine_description(), "versions": versions(nginx, wrk),
        "revision": git_revision(), "notes": notes, "checks": found, "connections": connections,
        "upstream": f"nginx `return 200` {BODY_SIZE}-byte JSON" if nginx else "aiohttp fallback (not nginx)",
    }
    if args.json:
        args.json.write_text(json.dumps({"context": context, "runs": [asdict(r) for r in results],
                                         "rows": [asdict(r) for r in rows]}, indent=2))
    if args.record:
        record(generated_section(rows, results, settings, context))
    else:
        print("not recorded (--quick or --no-record; pass --record to force)")
    return 1 if failed or any(m.startswith("BAD") for r in rows for m in r.marks) else 0


def exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM/SIGHUP become SystemExit so the finally: below still stops everything."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)
    workdir = None
    procs = None
    try:
        wrk = require_wrk()
        scenarios = load_scenarios(args.scenarios_dir, args.scenario)
        raise_fd_limit()
        workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        workdir.chmod(0o755)  # nginx workers (user nobody) must traverse it
        procs = Processes(workdir)
        return run_benchmark(args, wrk, scenarios, procs)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StartError as exc:
        print(f"error: {exc}\n{exc.stderr}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        if procs is not None:
            procs.stop_all()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
