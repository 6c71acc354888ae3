"""The cache key: everything that can change a cached answer, and nothing else.

SPEC §4a "One key": a stored response is only ever served to a request that would
have produced it. The key is built from what the gateway itself sends upstream, so
a client header the gateway does not forward can never select or poison an entry:

- the route (two routes may send one client path to different upstreams or paths);
- the method class: GET (HEAD is answered from the GET entry);
- the host and scheme the upstream is told about (``X-Forwarded-Host`` and
  ``-Proto``, which a backend may use to write absolute links: they come from a
  trusted proxy or are the gateway's own, never the client's);
- the normalised path and the query with its parameters sorted by name (duplicates
  keep their order: backends differ on which one wins), minus ``ignore_params``;
- the values of the route's ``vary`` headers (absent and empty differ);
- for ``per_user`` routes, the verified subject (never the raw token).

Each field is length-prefixed before hashing, so no value can be crafted to shift
into its neighbour. The digest (BLAKE2b, 160 bits) is the variant; the path stays
beside it in clear, for invalidation generations and purges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["CacheKey", "canonical_query", "make_key"]


@dataclass(frozen=True, slots=True)
class CacheKey:
    path: str
    """The normalised client path: what writes invalidate and purges name."""
    variant: bytes
    """A digest of everything else in the key."""


def canonical_query(query: str, ignore: frozenset[str]) -> str:
    """``query`` without its ``?``: parameters sorted by name (a stable sort, so
    repeated names keep their order), empty pieces dropped, ignored names removed
    (compared percent-decoded, so ``utm%5Fsource`` is ``utm_source``)."""
    if not query:
        return ""
    parts = [part for part in query.split("&") if part]
    if ignore:
        parts = [part for part in parts if unquote(part.partition("=")[0]) not in ignore]
    parts.sort(key=_param_name)
    return "&".join(parts)


def _param_name(part: str) -> str:
    return part.partition("=")[0]


def _field(value: str | bytes | None) -> bytes:
    if value is None:
        return b"-\n"
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return b"%d:" % len(value) + value


def make_key(
    *,
    route: str,
    host: str | None,
    proto: str,
    path: str,
    query: str,
    vary: Sequence[str | None] = (),
    subject: str | None = None,
) -> CacheKey:
    """``query`` is already canonical; ``vary`` holds one value (or None when the
    header is absent) per configured header, in the route's order."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(_field(route))
    digest.update(b"GET")
    digest.update(_field(host.lower() if host is not None else None))
    digest.update(_field(proto))
    digest.update(_field(path))
    digest.update(_field(query))
    for value in vary:
        digest.update(_field(value))
    digest.update(_field(subject))
    return CacheKey(path=path, variant=digest.digest())
