"""A bounded memory of tokens that already verified, so a hot caller costs a hash.

An RS256 verification is tens of microseconds of RSA plus two JSON parses; a client
that sends the same access token on every request for fifteen minutes should pay
that once. Entries are keyed by the SHA-256 of the token (the table never holds a
usable credential), never outlive the token's ``exp`` (read with the same clock the
verifier uses), and the table is bounded: when full, the oldest entry goes.

Only *successful* verifications are remembered: garbage an attacker sends is never
stored, so it cannot push real callers out; only tokens the issuer signed can.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.auth.verifier import VerifiedToken

__all__ = ["VerifiedTokenCache", "token_digest"]


def token_digest(token: str) -> bytes:
    # surrogatepass: a header value decoded with surrogateescape must still hash,
    # never raise (the stage only lets JWS-shaped ASCII through, but be total).
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class VerifiedTokenCache:
    __slots__ = ("_entries", "_max_entries", "_clock")

    def __init__(self, *, max_entries: int, clock: Callable[[], float]) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1 (no cache at all is None, not 0)")
        self._entries: dict[bytes, VerifiedToken] = {}
        self._max_entries = max_entries
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> VerifiedToken | None:
        digest = token_digest(token)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[digest]
            return None
        return entry

    def put(self, token: str, verified: VerifiedToken) -> None:
        if verified.expires_at <= self._clock():
            return
        entries = self._entries
        digest = token_digest(token)
        if digest not in entries and len(entries) >= self._max_entries:
            # Insertion order is age: drop the oldest. Cheaper than an LRU's
            # move-to-end on every hit, and a hot token that falls out is simply
            # verified once more.
            del entries[next(iter(entries))]
        entries[digest] = verified
