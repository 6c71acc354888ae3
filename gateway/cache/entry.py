"""One stored response and the arithmetic of its age (RFC 9111 §4.2).

An entry keeps what is needed to answer again exactly as the upstream did: status,
reason, the end-to-end header lines as bytes (hop-by-hop headers, ``Age`` and
``Content-Length`` are not stored: they are the gateway's to write when it answers),
and the body. Its freshness is decided once, when it is stored (``fresh_for``, from
the route's ttl shortened by the origin's ``s-maxage``/``max-age``), and its age is
RFC 9111 §4.2.3's ``current_age``: what the upstream said it already was, plus the
time it spent in flight, plus the time it has been resident here.

``to_bytes``/``from_bytes`` are the format a shared store keeps: a JSON head (never
pickle: a store anyone else can write to must not be able to run code here) and the
body as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["Entry", "EntryFormatError"]

_FORMAT = 1


class EntryFormatError(ValueError):
    """A stored value that is not an entry this gateway wrote (treated as a miss)."""


@dataclass(slots=True)
class Entry:
    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    path: str
    """The normalised client path it answers (for purges by path or prefix)."""
    response_time: float
    """Wall-clock seconds when the response (or the 304 that freshened it) arrived."""
    initial_age: float
    """RFC 9111 §4.2.3 ``corrected_initial_age`` at ``response_time``."""
    fresh_for: float
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    must_revalidate: bool = False
    etag: bytes | None = None
    last_modified: bytes | None = None
    generation: int = 0
    """The path's invalidation generation it was stored under (shared stores check it)."""
    size: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not self.size:
            self.size = len(self.body) + sum(len(n) + len(v) + 4 for n, v in self.headers) + 256

    def age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.response_time)

    def is_fresh(self, now: float) -> bool:
        return self.age(now) < self.fresh_for

    def staleness(self, now: float) -> float:
        """Seconds past the end of freshness (0 while fresh)."""
        return max(0.0, self.age(now) - self.fresh_for)

    def keep_for(self, now: float) -> float:
        """How long a store should keep it: fresh time left plus the longest stale
        window, plus the time a validator is worth having for revalidation."""
        window = max(self.stale_while_revalidate, self.stale_if_error)
        if self.etag is not None or self.last_modified is not None:
            window = max(window, self.fresh_for)  # revalidating beats refetching
        return max(0.0, self.fresh_for - self.age(now)) + window

    def header(self, name: bytes) -> bytes | None:
        lower = name.lower()
        for n, v in self.headers:
            if n.lower() == lower:
                return v
        return None

    # -- the shared stores' format ------------------------------------------------------

    def to_bytes(self) -> bytes:
        head = {
            "v": _FORMAT,
            "s": self.status,
            "r": self.reason,
            "h": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.headers],
            "p": self.path,
            "t": self.response_time,
            "a": self.initial_age,
            "f": self.fresh_for,
            "swr": self.stale_while_revalidate,
            "sie": self.stale_if_error,
            "mr": self.must_revalidate,
            "e": self.etag.decode("latin-1") if self.etag is not None else None,
            "lm": self.last_modified.decode("latin-1") if self.last_modified is not None else None,
            "g": self.generation,
        }
        encoded = json.dumps(head, separators=(",", ":")).encode()
        return b"%d\n" % len(encoded) + encoded + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        try:
            length_text, _, rest = data.partition(b"\n")
            length = int(length_text)
            head = json.loads(rest[:length])
            if head.get("v") != _FORMAT:
                raise EntryFormatError("unknown entry format")
            return cls(
                status=int(head["s"]),
                reason=str(head["r"]),
                headers=tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in head["h"]),
                body=rest[length:],
                path=str(head["p"]),
                response_time=float(head["t"]),
                initial_age=float(head["a"]),
                fresh_for=float(head["f"]),
                stale_while_revalidate=float(head["swr"]),
                stale_if_error=float(head["sie"]),
                must_revalidate=bool(head["mr"]),
                etag=head["e"].encode("latin-1") if head["e"] is not None else None,
                last_modified=head["lm"].encode("latin-1") if head["lm"] is not None else None,
                generation=int(head["g"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeError, OverflowError, RecursionError) as exc:
            # Overflow: a number json reads as inf where an int belongs; recursion: JSON
            # nested deeper than the parser goes. Whatever a store holds, it is a miss.
            raise EntryFormatError(f"not a cache entry: {exc}") from None
