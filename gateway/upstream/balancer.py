"""Targets and the strategies that pick one for a request.

Every strategy implements :class:`Balancer`: ``pick(candidates, key)`` chooses among
the targets that are available *now* (healthy, not ejected, not already tried by this
request). The health checker and the ejection logic never talk to a strategy; they
change which candidates it is offered.

- ``round_robin`` / ``weighted``: smooth weighted round robin (nginx's algorithm):
  weights are honoured and spread out (a:5 b:1 gives a a a b a a ..., not a×5 then b);
  with equal weights it is plain rotation.
- ``least_conn``: the fewest in-flight requests per unit of weight.
- ``p2c``: power of two random choices on in-flight per weight: near least_conn
  quality without every process herding onto the same "least" target.
- ``hash``: consistent hashing on a ring of virtual nodes (100 per unit of weight), so
  removing a target moves only its own share of keys.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from yarl import URL

from gateway.upstream.pool import ConnectionPool

__all__ = ["Target", "Balancer", "WeightedRoundRobin", "LeastConn", "PowerOfTwo", "ConsistentHash", "make_balancer"]


@dataclass(eq=False, slots=True)
class Target:
    url: str
    """Origin and base path without a trailing slash: ``http://127.0.0.1:8001[/base]``."""
    origin: str
    """``scheme://host:port``, for health checks."""
    label: str
    """``host:port``, the ``target`` label in metrics and logs."""
    host_header: bytes
    """The Host value sent when ``host_header: upstream``."""
    base_path: bytes
    pool: ConnectionPool
    weight: int = 1
    in_flight: int = 0
    healthy: bool = True
    """The active health checks' verdict (true when there are none)."""
    ejected: bool = False
    """Taken out by passive outlier ejection until its timer readmits it."""
    ejected_until: float = 0.0
    consecutive_failures: int = 0
    ejections: int = 0
    current_weight: int = 0
    """Smooth weighted round robin's running score."""

    @property
    def available(self) -> bool:
        return self.healthy and not self.ejected

    @classmethod
    def from_url(cls, url: str, *, weight: int = 1, max_connections: int, connect_timeout: float) -> Target:
        parsed = URL(url)
        host = parsed.raw_host or ""
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        shown = f"[{host}]" if ":" in host else host
        default_port = port == (443 if parsed.scheme == "https" else 80)
        ssl_context = ssl.create_default_context() if parsed.scheme == "https" else None
        pool = ConnectionPool(
            host=host,
            port=port,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            ssl=ssl_context,
            server_hostname=host,
        )
        return cls(
            url=url,
            origin=f"{parsed.scheme}://{shown}:{port}",
            label=f"{shown}:{port}",
            host_header=(shown if default_port else f"{shown}:{port}").encode("ascii"),
            base_path=parsed.raw_path.rstrip("/").encode("ascii"),
            pool=pool,
            weight=weight,
        )


class Balancer(Protocol):
    needs_key: bool
    """Whether ``pick`` uses a request key (only ``hash`` does)."""

    def pick(self, candidates: Sequence[Target], key: str | None) -> Target: ...


class WeightedRoundRobin:
    needs_key = False

    def __init__(self, targets: Sequence[Target]) -> None:
        self._uniform = len({t.weight for t in targets}) <= 1
        self._next = 0

    def pick(self, candidates: Sequence[Target], key: str | None) -> Target:
        if self._uniform:
            index = self._next % len(candidates)
            self._next = index + 1
            return candidates[index]
        total = 0
        best: Target | None = None
        for target in candidates:
            target.current_weight += target.weight
            total += target.weight
            if best is None or target.current_weight > best.current_weight:
                best = target
        assert best is not None
        best.current_weight -= total
        return best


class LeastConn:
    needs_key = False

    def __init__(self, targets: Sequence[Target]) -> None:
        self._offset = 0

    def pick(self, candidates: Sequence[Target], key: str | None) -> Target:
        # Rotate the starting point so ties do not always favour the first target.
        n = len(candidates)
        self._offset = (self._offset + 1) % n
        best = candidates[self._offset]
        best_load = best.in_flight / best.weight
        for i in range(1, n):
            target = candidates[(self._offset + i) % n]
            load = target.in_flight / target.weight
            if load < best_load:
                best, best_load = target, load
        return best


class PowerOfTwo:
    needs_key = False

    def __init__(self, targets: Sequence[Target], *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Target], key: str | None) -> Target:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        i = self._rng.randrange(n)
        j = self._rng.randrange(n - 1)
        if j >= i:
            j += 1
        a, b = candidates[i], candidates[j]
        return a if a.in_flight / a.weight <= b.in_flight / b.weight else b


def _point(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "big")


class ConsistentHash:
    needs_key = True
    VNODES = 100

    def __init__(self, targets: Sequence[Target]) -> None:
        ring: list[tuple[int, int]] = []
        for index, target in enumerate(targets):
            for v in range(self.VNODES * target.weight):
                ring.append((_point(f"{target.url}#{v}"), index))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [targets[i] for _, i in ring]

    def pick(self, candidates: Sequence[Target], key: str | None) -> Target:
        start = bisect.bisect(self._points, _point(key or ""))
        owners = self._owners
        n = len(owners)
        for step in range(n):
            owner = owners[(start + step) % n]
            if owner in candidates:
                return owner
        return candidates[0]


def make_balancer(strategy: str, targets: Sequence[Target]) -> Balancer:
    if strategy in ("round_robin", "weighted"):
        return WeightedRoundRobin(targets)
    if strategy == "least_conn":
        return LeastConn(targets)
    if strategy == "p2c":
        return PowerOfTwo(targets)
    if strategy == "hash":
        return ConsistentHash(targets)
    raise ValueError(f"unknown strategy {strategy!r}")
