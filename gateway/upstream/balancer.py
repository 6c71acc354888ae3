"""Picking a target for a request.

Strategies implement :class:`Balancer`; the forwarder and (later) the health
checker only talk to that interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from yarl import URL

__all__ = ["Target", "Balancer", "RoundRobin"]


@dataclass(eq=False, slots=True)
class Target:
    url: str
    """Base URL without a trailing slash: ``http://127.0.0.1:8001`` or ``http://h:1/base``."""
    label: str
    """``host:port``, the ``target`` label in metrics and logs."""
    host_header: str
    """The Host value when ``host_header: upstream``."""
    base_path: str
    in_flight: int = 0

    @classmethod
    def from_url(cls, url: str) -> Target:
        parsed = URL(url)
        host = parsed.raw_host or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        default = parsed.port == {"http": 80, "https": 443}.get(parsed.scheme)
        host_header = host if default else f"{host}:{parsed.port}"
        origin = f"{parsed.scheme}://{host}:{parsed.port}"
        base = parsed.raw_path.rstrip("/")
        return cls(url=origin + base, label=f"{host}:{parsed.port}", host_header=host_header, base_path=base)


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
