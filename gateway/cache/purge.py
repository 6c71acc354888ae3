"""``POST /cache/purge`` on the admin listener (SPEC §5).

The body names what to drop, exactly one of:

- ``{"path": "/api/menu-items"}``: every variant of that path (each query string,
  ``vary`` value and ``per_user`` subject);
- ``{"prefix": "/api/"}``: every path under it, segment-aware like route matching
  (``/api`` covers ``/api`` and ``/api/x``, not ``/apix``);
- ``{"all": true}``: everything.

The answer is ``{"purged": N}`` (``null`` where the store cannot count) and the store
kind. A path or prefix is normalised as request paths are, so ``/api//x/../menu``
purges what ``/api/menu`` cached. With ``workers`` > 1 the supervisor sends the
purge to every worker (each holds its own memory entries) and lists their answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.cache.store import CacheStoreError
from gateway.path import PathError, normalise_path
from gateway.problem import problem_response

if TYPE_CHECKING:
    from gateway.runtime import Runtime

__all__ = ["purge_handler", "PurgeRequestError", "parse_purge"]

_MAX_BODY = 64 * 1024


class PurgeRequestError(ValueError):
    """The purge body is not one of the three accepted shapes."""


def parse_purge(document: Any) -> dict[str, Any]:
    """The keyword arguments for :meth:`ResponseCache.purge`, or PurgeRequestError."""
    if not isinstance(document, dict) or len(document) != 1:
        raise PurgeRequestError('expected exactly one of {"path": ...}, {"prefix": ...} or {"all": true}')
    (name, value), = document.items()
    if name == "all":
        if value is not True:
            raise PurgeRequestError('"all" must be true')
        return {"everything": True}
    if name not in ("path", "prefix"):
        raise PurgeRequestError(f'unknown key {name!r}: expected "path", "prefix" or "all"')
    if not isinstance(value, str) or not value.startswith("/") or "?" in value or "#" in value:
        raise PurgeRequestError(f'"{name}" must be an absolute path like /api/menu-items, without a query')
    try:
        normal = normalise_path(value)
    except PathError as exc:
        raise PurgeRequestError(f'"{name}": {exc}') from None
    return {name: normal}


def purge_handler(runtime: Callable[[], Runtime]) -> Callable[[web.Request], Any]:
    async def purge(request: web.Request) -> web.Response:
        cache = runtime().cache
        if cache is None:
            return problem_response(404, "no route has a cache: nothing to purge")
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return problem_response(413, "the purge request is too large")
        try:
            raw = await request.content.read(_MAX_BODY + 1)
            if len(raw) > _MAX_BODY:
                return problem_response(413, "the purge request is too large")
            arguments = parse_purge(json.loads(raw or b"null"))
        except (ValueError, UnicodeDecodeError) as exc:
            detail = str(exc) if isinstance(exc, PurgeRequestError) else "the body must be JSON"
            return problem_response(400, detail)
        try:
            count = await cache.purge(**arguments)
        except CacheStoreError as exc:
            return problem_response(503, f"the cache store is unavailable: {exc}", headers={"Retry-After": "1"})
        return web.json_response({"purged": count, "store": cache.store.kind})

    return purge
