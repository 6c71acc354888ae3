"""Picking a target for a request.

Strategies implement :class:`Balancer`; the forwarder and (later) the health
checker only talk to that interface.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol

from yarl import URL

from gateway.upstream.pool import ConnectionPool

__all__ = ["Target", "Balancer", "RoundRobin"]


@dataclass(eq=False, slots=True)
class Target:
    url: str
    """Origin and base path without a trailing slash: ``http://127.0.0.1:8001[/base]``."""
    label: str
    """``host:port``, the ``target`` label in metrics and logs."""
    host_header: bytes
    """The Host value sent when ``host_header: upstream``."""
    base_path: bytes
    pool: ConnectionPool
    in_flight: int = 0

    @classmethod
    def from_url(cls, url: str, *, max_connections: int, connect_timeout: float) -> Target:
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
            label=f"{shown}:{port}",
            host_header=(shown if default_port else f"{shown}:{port}").encode("ascii"),
            base_path=parsed.raw_path.rstrip("/").encode("ascii"),
            pool=pool,
        )


class Balancer(Protocol):
    targets: tuple[Target, ...]

    def pick(self) -> Target: ...


class RoundRobin:
    """Each target in turn."""

    __slots__ = ("targets", "_next")

    def __init__(self, targets: tuple[Target, ...]) -> None:
        self.targets = targets
        self._next = 0

    def pick(self) -> Target:
        index = self._next
        self._next = (index + 1) % len(self.targets)
        return self.targets[index]
