"""``Cache-Control`` as a cache reads it: parsed once per upstream response.

Only the response directives RFC 9111 gives a shared cache matter here. Unknown
directives are ignored (RFC 9111 §5.2.3); a directive written twice with different
arguments, or a malformed number, is read the safe way: ``max-age`` takes the
smallest value and an unreadable one counts as 0 (stale at once), so a confused
origin never gets more caching than it asked for. The field-name forms
``no-cache="Set-Cookie"`` and ``private="..."`` are treated as their plain forms:
storing part of a response is not something this cache does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ResponseDirectives", "parse_response_directives"]


@dataclass(frozen=True, slots=True)
class ResponseDirectives:
    no_store: bool = False
    no_cache: bool = False
    private: bool = False
    must_revalidate: bool = False
    """``must-revalidate`` or ``proxy-revalidate``: never served stale."""
    max_age: float | None = None
    s_maxage: float | None = None
    stale_while_revalidate: float | None = None
    stale_if_error: float | None = None


def _seconds(argument: str | None) -> float:
    if argument is None:
        return 0.0
    argument = argument.strip().strip('"')
    if not argument.isdigit():
        return 0.0
    return float(min(int(argument), 2**31))  # RFC 9111 §1.2.2: cap, never overflow


def parse_response_directives(values: Iterable[bytes]) -> ResponseDirectives:
    """``values``: every ``Cache-Control`` field value of one response."""
    flags: dict[str, bool] = {}
    numbers: dict[str, float] = {}
    for value in values:
        for part in value.decode("latin-1").split(","):
            name, eq, argument = part.partition("=")
            name = name.strip().lower()
            if not name:
                continue
            if name in ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"):
                seconds = _seconds(argument if eq else None)
                numbers[name] = min(seconds, numbers.get(name, seconds))
            else:
                flags[name] = True
    return ResponseDirectives(
        no_store=flags.get("no-store", False),
        no_cache=flags.get("no-cache", False),
        private=flags.get("private", False),
        must_revalidate=flags.get("must-revalidate", False) or flags.get("proxy-revalidate", False),
        max_age=numbers.get("max-age"),
        s_maxage=numbers.get("s-maxage"),
        stale_while_revalidate=numbers.get("stale-while-revalidate"),
        stale_if_error=numbers.get("stale-if-error"),
    )
