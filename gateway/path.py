"""One path: the normalised request path that every stage decides on and the
upstream receives.

Gateways get broken when two layers read one path differently (the router sees
``/public/..%2fadmin``, the backend sees ``/admin``). So the path is normalised
once, before routing, and that exact string is what is forwarded:

- percent-encodings of unreserved characters are decoded (``%2e`` -> ``.``,
  ``%7E`` -> ``~``); every other encoding is kept, with upper-case hex;
- a dot-segment carrying parameters (``/..;/``, which Java servlet containers resolve
  as ``..``), an encoded ``/`` (``%2F``), ``\\`` (``%5C``) or NUL (``%00``), a literal ``\\``,
  a control character or a malformed ``%`` escape is refused: backends disagree on
  what they mean, so no answer is safe;
- duplicate slashes are merged and ``.`` / ``..`` segments resolved (RFC 3986
  §5.2.4); a path that climbs above the root is refused.

A trailing slash is kept: ``/auth/users/`` and ``/auth/users`` are different
resources to many backends.
"""

from __future__ import annotations

import re

__all__ = ["PathError", "normalise_path"]

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")

_HEX = "0123456789abcdefABCDEF"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_FORBIDDEN_DECODED = frozenset({0x2F, 0x5C, 0x00})  # '/', '\', NUL


class PathError(ValueError):
    """The path is malformed or escapes the root; the request gets a 400."""


def _decode_unreserved(path: str) -> str:
    out: list[str] = []
    i = 0
    n = len(path)
    while i < n:
        ch = path[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        pair = path[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise PathError("malformed percent-encoding in path")
        byte = int(pair, 16)
        if byte in _FORBIDDEN_DECODED:
            raise PathError("encoded '/', '\\' or NUL in path")
        decoded = chr(byte)
        if decoded in _UNRESERVED:
            out.append(decoded)
        else:
            out.append("%" + pair.upper())
        i += 3
    return "".join(out)


def _resolve_segments(path: str) -> str:
    segments = path.split("/")
    stack: list[str] = []
    # segments[0] is the empty string before the leading '/'.
    last = len(segments) - 1
    trailing = False
    for index, segment in enumerate(segments[1:], start=1):
        if ";" in segment and segment.partition(";")[0] in (".", ".."):
            # "..;/" is ".." to Tomcat and Spring (path parameters are stripped before
            # resolving), a plain name to everyone else: no single safe meaning.
            raise PathError("dot-segment with parameters in path")
        if segment == "" or segment == ".":
            trailing = index == last
            continue
        if segment == "..":
            if not stack:
                raise PathError("path climbs above the root")
            stack.pop()
            trailing = index == last
            continue
        stack.append(segment)
        trailing = False
    result = "/" + "/".join(stack)
    if trailing and stack:
        result += "/"
    return result


def normalise_path(path: str) -> str:
    """Return the canonical form of an origin-form path (no query string).

    Raises :class:`PathError` for anything that has no single safe meaning.
    """
    if not path.startswith("/"):
        raise PathError("path must start with '/'")
    bad = _FORBIDDEN_CHARS.search(path)
    if bad is not None:
        raise PathError("backslash in path" if bad.group() == "\\" else "control character in path")
    # Fast path: nothing to decode, merge or resolve (the common case by far).
    if "%" not in path and "//" not in path and "/." not in path:
        return path
    if "%" in path:
        path = _decode_unreserved(path)
    if "//" not in path and "/." not in path:
        return path
    return _resolve_segments(path)
