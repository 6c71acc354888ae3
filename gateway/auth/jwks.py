"""A remote JSON Web Key Set (``auth.jwt.jwks_url``): fetched, cached, refreshed.

Why it behaves like this:
- fetched once at start-up and then every ``jwks_refresh`` in the background, so key
  rotation at the issuer is picked up without a restart;
- a token naming a ``kid`` we do not know triggers one extra fetch -- at most one per
  ``jwks_cooldown`` however many such tokens arrive, and concurrent ones share the
  fetch in flight -- so a new signing key works at once, while a flood of made-up
  ``kid`` values cannot turn the gateway into a load generator against the issuer;
- a failed fetch (server down, timeout, non-200, garbage, no usable key) keeps every
  key already known: an identity provider's bad minute must not log everyone out;
- each fetch is bounded in time (``jwks_timeout``) and size (1 MiB), redirects are not
  followed and no proxy from the environment is used: the keys come from exactly the
  URL the operator wrote.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable

import aiohttp

from gateway.auth.keys import KeyMaterialError, KeySet, VerificationKey, parse_jwks

__all__ = ["RemoteJwks", "JwksFetchError", "MAX_JWKS_BYTES"]

log = logging.getLogger("gateway.auth.jwks")

MAX_JWKS_BYTES = 1024 * 1024


class JwksFetchError(Exception):
    """The JWKS endpoint answered something other than a usable key set."""


class RemoteJwks:
    def __init__(
        self,
        url: str,
        *,
        allowed: Iterable[str],
        timeout: float,
        refresh_every: float,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.allowed = frozenset(allowed)
        self.timeout = timeout
        self.refresh_every = refresh_every
        self.cooldown = cooldown
        self.keys = KeySet()
        """The current snapshot; replaced whole by a successful fetch, never mutated."""
        self.fetches = 0
        """Fetch attempts so far (for tests and ``/status``)."""
        self._clock = clock
        self._last_attempt = -math.inf
        self._session: aiohttp.ClientSession | None = None
        self._inflight: asyncio.Future[bool] | None = None
        self._task: asyncio.Task[None] | None = None

    def adopt(self, previous: RemoteJwks) -> None:
        """Start from the keys a previous instance (before a reload) knew, when it
        fetched the same URL; the next successful fetch replaces them as usual."""
        if previous.url != self.url:
            return
        kept = [
            VerificationKey(k.kid, k.algorithms & self.allowed, k.key, k.source)
            for k in previous.keys.keys
            if k.algorithms & self.allowed
        ]
        self.keys = KeySet(kept)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"jwks refresh {self.url}")

    async def close(self) -> None:
        for task in (self._task, self._inflight):
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = self._inflight = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            # Without any key yet, retry at the cooldown pace rather than every refresh period.
            await asyncio.sleep(self.refresh_every if len(self.keys) else min(self.cooldown, self.refresh_every))
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop future refreshes
                log.exception("JWKS refresh from %s crashed", self.url)

    async def refresh(self) -> bool:
        """Fetch now (or join the fetch in flight); ``True`` if the keys were replaced."""
        future = self._inflight
        if future is None:
            future = self._inflight = asyncio.ensure_future(self._fetch())
            future.add_done_callback(self._fetch_done)
        # shield: a caller that goes away must not cancel a fetch others are waiting on.
        return await asyncio.shield(future)

    def _fetch_done(self, future: asyncio.Future[bool]) -> None:
        if self._inflight is future:
            self._inflight = None

    async def refresh_for_unknown_kid(self) -> bool:
        """A token named a ``kid`` we lack: fetch, unless one ran within the cooldown."""
        future = self._inflight
        if future is not None:
            return await asyncio.shield(future)
        if self._clock() - self._last_attempt < self.cooldown:
            return False
        return await self.refresh()

    async def _fetch(self) -> bool:
        self._last_attempt = self._clock()
        self.fetches += 1
        known = len(self.keys)
        session = self._session
        if session is None:
            log.warning("JWKS %s: not started, no fetch", self.url)
            return False
        try:
            async with session.get(self.url, allow_redirects=False, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise JwksFetchError(f"HTTP {response.status}")
                body = await _read_limited(response, MAX_JWKS_BYTES)
            keys, problems = parse_jwks(body, source=f"jwks_url {self.url}", allowed=self.allowed)
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyMaterialError, JwksFetchError) as exc:
            log.warning("JWKS refresh from %s failed, keeping the %d key(s) already known: %s", self.url, known, str(exc) or type(exc).__name__)
            return False
        for problem in problems:
            log.warning("JWKS %s: ignored %s", self.url, problem)
        if not keys:
            log.warning("JWKS %s holds no key usable for the configured algorithms; keeping the %d known", self.url, known)
            return False
        self.keys = KeySet(keys)
        log.info("JWKS %s: %d key(s) loaded (kids: %s)", self.url, len(keys), ", ".join(sorted(self.keys.kids())) or "none")
        return True


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise JwksFetchError(f"larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
