"""Cache entries in Redis (``store.kind: redis``): one cache for every gateway instance.

Keys (``gw:c:`` namespace, beside the throttle's ``gw:tb:``). Everything of one path
shares one hash tag, so it sits in one Cluster slot and a lookup never crosses nodes:

- ``gw:c:{<path>}:g``: the path's invalidation generation (absent means 0);
- ``gw:c:{<path>}:e:<variant hex>``: one entry, ``Entry.to_bytes()`` (a JSON head and
  the body as it is). HEAD is answered from the GET entry: a body is stored once;
- ``gw:c:{<path>}:l:<variant hex>``: the fill lease, held by the one instance asking
  the upstream for that variant (cross-instance coalescing).

A path that itself contains ``}`` still gives all its keys one tag (everything up to
its first ``}``, which is the same for all of them), and no two (path, kind, variant)
triples make the same key: the suffixes carry no ``}``.

**One round trip per lookup.** ``get`` is one ``MGET`` of the generation and the entry;
the entry is served only when the generation it was stored under is the path's
current one (and it parses: anything else under an entry key is a miss).

**Generations that never come back.** Generation keys need a TTL, or every path ever
written to would stay in Redis for good. With ``INCR``, a key that expired would start
again at 1, 2, 3... and meet entries still alive under those very numbers: an
invalidated answer served again. So an invalidation writes a fresh random 63-bit
value instead (``SET g <random> PX max_lifetime+1s``): a value already used comes back
with probability 2**-63 per live entry, whatever expired meanwhile, and wall clocks
(which jump, and differ between the servers of a failover) play no part. Why that is
enough, for an entry ``E`` stored under generation ``G`` of path ``P``:

1. ``E`` is written only if ``G`` is ``P``'s generation at that moment: ``put`` is one
   Lua script that compares before it writes. A fill that read its generation before
   an invalidation landed therefore stores nothing (closing the race
   ``generations.py`` describes, and the one where the generation key expires
   between the read and the write).
2. ``E`` lives at most ``max_lifetime`` (its ``PX`` is ``keep_for`` clamped to it).
3. Any invalidation of ``P`` after ``E`` was written sets a new value with a TTL of
   ``max_lifetime`` + 1 s, and ``put`` only ever lengthens that TTL. So the key that
   says "not ``G``" outlives ``E``: when it expires (and ``P`` reads 0 again), ``E``
   and every other entry stored before that invalidation are already gone.
4. When no invalidation came after ``E``, the generation key may expire before ``E``
   (if ``G`` was not 0): ``E`` is then unservable, a spurious miss, never a stale hit.
   ``put`` lengthens the generation key's TTL to the new entry's lifetime to keep
   those misses rare.

Point 1 assumes a fill (generation read, upstream answer, ``put``) takes less than
``max_lifetime``; ``put`` refuses an entry whose answer arrived more than half of it
ago. Redis replication is asynchronous: a failover can lose the latest writes, an
invalidation among them, like any other acknowledged write (``WAIT`` could close that,
at a round trip per write).

**Leases.** ``lease`` is ``SET l <token> NX PX``, with a random token kept by this
process for the task that took it; ``release`` deletes the lease only if it still holds
that token (a compare-and-delete script), so an instance whose lease expired mid-fill
can never drop the next holder's.

**Purges.** ``purge(path=)`` starts a new generation for the path (a fill in flight
stores nothing) and deletes its entries, found by ``SCAN MATCH`` on the path's key
prefix (glob characters escaped) on the one node holding its slot; ``purge(prefix=)``
and ``purge(everything=True)`` ``SCAN`` every master, keep the entry keys whose path
is under the prefix (segment-aware, ``under_prefix``) and ``UNLINK`` them. Each returns
how many entries it deleted. SCAN walks the whole keyspace a step at a time: a purge is
an operator's action, each step is bounded, and Redis keeps serving in between.

**Failures.** Every call is bounded by ``store.timeout``; a circuit (the throttle
store's ``circuit.py``) then fails calls at once until a probe is due, so a dead or
hung Redis costs one timeout per probe interval, not one per request. Every failure is
a :class:`CacheStoreError`, which the stage turns into a pass-through (``BYPASS``,
counted in ``gateway_store_errors_total{operation=~"cache_.*"}``). An error *reply*
(e.g. ``OOM`` on a write) fails its call without opening the circuit: the server
answered at once, so there is no timeout to save. A probe that succeeds closes the
circuit: Redis coming back needs no restart. Lookups and writes carry an allowance for
their size on top of ``store.timeout`` (a link slower than ``_SLOWEST_LINK`` counts as
down): a 1 MiB entry is ~8 ms on 1 Gb/s, and timing out every large entry would open
the circuit for every small one.

**Its own connections.** The throttle store pipelines every decision on one connection
(``redis_batch.py``); a 1 MiB entry queued there would delay every throttle reply
behind it. The cache has its own redis-py client and pool, so large values never sit
in front of a throttle decision (Redis itself still runs one command at a time: a
deployment with very large entries may give the cache a Redis of its own).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import ResponseError

from gateway.cache.entry import Entry, EntryFormatError
from gateway.cache.key import CacheKey
from gateway.cache.store import CacheStoreDown, CacheStoreError, under_prefix
from gateway.config.store import StoreConfig, redacted_url
from gateway.metrics import Metrics
from gateway.store.circuit import PROBE_INTERVAL, Circuit
from gateway.store.redis_batch import BatchedConnection
from gateway.store.redis_client import UNAVAILABLE, describe, make_client

__all__ = ["RedisCacheStore", "MAX_LIFETIME", "entry_key", "generation_key", "lease_key"]

log = logging.getLogger("gateway.cache")

T = TypeVar("T")

MAX_LIFETIME = 24 * 3600.0
"""The longest an entry is kept (its ``keep_for`` is clamped to this), and so the TTL
of a generation key. Route ttls are minutes to hours; an origin's
``stale-if-error=N`` can ask for any N, and each invalidated path costs a generation
key for this long."""
_GENERATION_MARGIN_MS = 1000
"""The generation key outlives the longest entry by this much (TTLs are whole ms on
one server clock; the margin keeps equal expiries from racing)."""
_SLOWEST_LINK = 32 * 1024 * 1024
"""Bytes per second below which a transfer counts as an outage (a quarter of 1 Gb/s)."""
_SCAN_COUNT = 1000


# KEYS: generation, entry. ARGV: the generation the fill read, the value, its PX, the
# TTL the generation key should at least have. Stores only under the current
# generation (point 1 of the module doc); lengthens, never shortens, the generation
# key's TTL (point 3).
_PUT_LUA = """
local current = redis.call('GET', KEYS[1])
if (current or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if current then
  local left = redis.call('PTTL', KEYS[1])
  if left >= 0 and left < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
end
return 1
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _tag(path: str) -> bytes:
    return b"gw:c:{" + path.encode("utf-8", "surrogateescape") + b"}"


def generation_key(path: str) -> bytes:
    return _tag(path) + b":g"


def _mget(first: bytes, second: bytes) -> bytes:
    """``MGET first second`` in RESP, for the batched lookup connection."""
    return b"*3\r\n$4\r\nMGET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(first), first, len(second), second)


def entry_key(key: CacheKey) -> bytes:
    return _tag(key.path) + b":e:" + key.variant.hex().encode()


def lease_key(key: CacheKey) -> bytes:
    return _tag(key.path) + b":l:" + key.variant.hex().encode()


_HEX = frozenset(b"0123456789abcdef")


def _entry_path(key: bytes) -> str | None:
    """The path of an entry key, or None for any other key. The last ``}:e:`` is the
    separator: the hex after it holds no ``}``, while a path may hold anything."""
    if not key.startswith(b"gw:c:{"):
        return None
    head, separator, variant = key.rpartition(b"}:e:")
    if not separator or not variant or not _HEX.issuperset(variant) or len(head) <= 6:
        return None
    return head[6:].decode("utf-8", "surrogateescape")


def _glob_escape(text: bytes) -> bytes:
    """``text`` matched literally by ``SCAN MATCH`` (Redis's glob: ``* ? [ ] \\``)."""
    out = bytearray()
    for byte in text:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _new_generation() -> int:
    """Random in [1, 2**63): never 0 (an absent key), a valid signed 64-bit integer
    for any tool that reads it."""
    return secrets.randbelow((1 << 63) - 1) + 1


def _parse_generation(value: bytes | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        # Not ours: no entry is stored under it, and none will be until the next
        # invalidation replaces it.
        return -1


class RedisCacheStore:
    kind = "redis"
    shared = True

    def __init__(
        self,
        config: StoreConfig,
        *,
        metrics: Metrics,
        max_entry_size: int = 1024 * 1024,
        max_lifetime: float = MAX_LIFETIME,
        probe_interval: float = PROBE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_entry_size`` (``cache.max_entry_size``) sizes the lookup's deadline;
        ``clock`` is the wall clock the stage's ``now`` comes from (``put`` compares them)."""
        if config.url is None:  # StoreConfig refuses this; a hand-built one may not
            raise ValueError("store.kind redis needs store.url")
        self._config = config
        self._url = redacted_url(config.url)
        self._timeout = config.timeout
        self._get_bound = config.timeout + max_entry_size / _SLOWEST_LINK
        self._max_lifetime = max_lifetime
        self._clock = clock
        self._client = make_client(config)  # its own, never the throttle store's
        self._lookups: BatchedConnection | None = None
        """Single server: lookups share one pipelined connection of the cache's own
        (redis_batch.py), because redis-py's per-call path costs more CPU than the rest
        of a hit. Never the throttle's connection: a large entry must not sit in front
        of a throttle decision. In a cluster, redis-py routes each lookup."""
        if not config.cluster:
            self._lookups = BatchedConnection(self._client.connection_pool.make_connection(), timeout=self._get_bound)
        self._put_script = self._client.register_script(_PUT_LUA)
        self._release_script = self._client.register_script(_RELEASE_LUA)
        self._leases: dict[tuple[bytes, asyncio.Task[Any] | None], tuple[bytes, bytes]] = {}
        """(variant, the task that took it) -> (lease key, token)."""
        self._circuit = Circuit(interval=probe_interval)
        self._connect_errors = metrics.store_errors("connect")

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client (for tests)."""
        return self._client

    @property
    def available(self) -> bool:
        """False while the circuit is open (Redis failed and has not answered a probe)."""
        return not self._circuit.is_open

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            # Cluster discovery is a few round trips (CLUSTER SLOTS, COMMAND).
            async with asyncio.timeout(self._timeout * 4):
                if isinstance(self._client, RedisCluster):
                    await self._client.initialize()
                await self._client.execute_command("PING")
        except UNAVAILABLE as exc:
            self._connect_errors.inc()
            self._circuit.failed()
            log.warning(
                "cache store %s is unreachable at start-up (%s); cached routes pass requests through until it answers",
                self._url, describe(exc),
            )

    async def close(self) -> None:
        self._leases.clear()
        if self._lookups is not None:
            await self._lookups.close()
        await self._client.aclose()

    # -- the one guarded call -------------------------------------------------------------

    async def _call(self, bound: float, command: Callable[..., Awaitable[T]], *args: Any, force: bool = False) -> T:
        """``command(*args)`` within ``bound`` seconds, through the circuit (``force``:
        an operator's purge is tried even while it is open)."""
        circuit = self._circuit
        if not circuit.allows() and not force:
            raise CacheStoreDown(f"the cache store {self._url} is down (next probe in {circuit.retry_after():.2f}s)")
        try:
            async with asyncio.timeout(bound):
                result = await command(*args)
        except ResponseError as exc:
            raise CacheStoreError(f"the cache store {self._url} refused: {exc}") from exc
        except UNAVAILABLE as exc:
            self._failed(exc)
            raise CacheStoreError(f"the cache store {self._url} failed: {describe(exc)}") from exc
        if circuit.is_open:
            circuit.succeeded()
            log.info("cache store %s answers again; cached routes use it", self._url)
            if self._lookups is not None:
                # The probe came through the lookup connection; the client's pooled
                # connections may still point at the server that went away. Drop them
                # now rather than fail (and reopen the circuit on) the next write.
                await self._client.connection_pool.disconnect()
        return result

    def _failed(self, exc: BaseException) -> None:
        was_open = self._circuit.is_open
        self._circuit.failed()
        if not was_open:
            log.warning(
                "cache store %s failed (%s); cached routes pass requests through, probing every %gs",
                self._url, describe(exc), self._circuit.interval,
            )

    # -- lookups and fills ----------------------------------------------------------------

    async def generation(self, path: str) -> int:
        value = await self._call(self._timeout, self._client.execute_command, "GET", generation_key(path))
        return _parse_generation(value)

    async def get(self, key: CacheKey) -> Entry | None:
        if self._lookups is not None:
            command = _mget(generation_key(key.path), entry_key(key))
            generation, value = await self._call(self._get_bound, self._lookups.submit, command)
        else:
            generation, value = await self._call(
                self._get_bound, self._client.execute_command, "MGET", generation_key(key.path), entry_key(key)
            )
        if value is None:
            return None
        try:
            entry = Entry.from_bytes(value)
        except EntryFormatError:
            return None
        if entry.generation != _parse_generation(generation) or entry.path != key.path:
            return None
        return entry

    async def put(self, key: CacheKey, entry: Entry, now: float) -> None:
        keep = min(entry.keep_for(now), self._max_lifetime)
        if keep <= 0 or self._clock() - now > self._max_lifetime / 2:
            return  # nothing to keep, or a fill so old that point 1 of the module doc no longer holds
        ms = max(1, int(keep * 1000))
        value = entry.to_bytes()
        await self._call(
            self._timeout + len(value) / _SLOWEST_LINK,
            self._put_script,
            [generation_key(key.path), entry_key(key)],
            [str(entry.generation), value, ms, ms + _GENERATION_MARGIN_MS],
        )

    async def invalidate(self, paths: Sequence[str]) -> None:
        if not paths:
            return
        ms = int(self._max_lifetime * 1000) + _GENERATION_MARGIN_MS
        # One round trip (per node, in a cluster: the paths are in different slots).
        pipe = self._client.pipeline(transaction=False)
        for path in paths:
            pipe.execute_command("SET", generation_key(path), _new_generation(), "PX", ms)
        await self._call(self._timeout, pipe.execute)

    async def lease(self, key: CacheKey, seconds: float) -> bool:
        name = lease_key(key)
        token = secrets.token_hex(16).encode()
        taken = await self._call(
            self._timeout, self._client.execute_command, "SET", name, token, "NX", "PX", max(1, int(seconds * 1000))
        )
        if not taken:
            return False
        self._leases[(key.variant, asyncio.current_task())] = (name, token)
        return True

    async def release(self, key: CacheKey) -> None:
        held = self._leases.pop((key.variant, asyncio.current_task()), None)
        if held is not None:
            name, token = held
            await self._call(self._timeout, self._release_script, [name], [token])

    # -- purges ---------------------------------------------------------------------------

    async def purge(self, *, path: str | None = None, prefix: str | None = None, everything: bool = False) -> int:
        if everything:
            return await self._purge_matching(b"gw:c:{*", lambda _: True)
        if path is not None:
            # First a new generation: a fill already in flight for this path must not
            # store what it fetched before the purge.
            ms = int(self._max_lifetime * 1000) + _GENERATION_MARGIN_MS
            await self._call(
                self._timeout, self._client.execute_command, "SET", generation_key(path), _new_generation(), "PX", ms,
                force=True,
            )
            node = await self._node_of(generation_key(path))
            pattern = _glob_escape(_tag(path)) + b":e:*"
            return await self._purge_matching(pattern, lambda found: found == path, nodes=[node])
        if prefix is not None:
            bare = prefix.rstrip("/")
            pattern = _glob_escape(_tag(bare)[:-1]) + b"*"  # the tag without its closing brace
            return await self._purge_matching(pattern, lambda found: under_prefix(found, prefix))
        return 0

    async def _purge_matching(
        self, pattern: bytes, wanted: Callable[[str], bool], *, nodes: list[ClusterNode | None] | None = None
    ) -> int:
        """UNLINK every entry key matching ``pattern`` whose path is ``wanted``, node by
        node (every master when ``nodes`` is not given); how many were deleted."""
        if nodes is None:
            nodes = await self._masters()
        deleted = 0
        for node in nodes:
            cursor = 0
            while True:
                cursor, keys = await self._scan(node, cursor, pattern)
                doomed = [k for k in keys if (found := _entry_path(k)) is not None and wanted(found)]
                if doomed:
                    pipe = self._client.pipeline(transaction=False)
                    for name in doomed:
                        # One key per command: in a cluster they may be in different slots
                        # (and the cluster client's own unlink() is not a pipeline command).
                        pipe.execute_command("UNLINK", name)
                    deleted += sum(await self._call(self._timeout * 4, pipe.execute, force=True))
                if cursor == 0:
                    break
        return deleted

    async def _scan(self, node: ClusterNode | None, cursor: int, pattern: bytes) -> tuple[int, list[bytes]]:
        if node is None:
            return await self._call(
                self._timeout * 4, self._client.scan, cursor, pattern, _SCAN_COUNT, force=True
            )
        client = self._client
        assert isinstance(client, RedisCluster)
        return await self._call(self._timeout * 4, _scan_cluster_node, client, node, cursor, pattern, force=True)

    async def _masters(self) -> list[ClusterNode | None]:
        client = self._client
        if not isinstance(client, RedisCluster):
            return [None]
        await self._initialized(client)
        return list(client.get_primaries())

    async def _node_of(self, key: bytes) -> ClusterNode | None:
        client = self._client
        if not isinstance(client, RedisCluster):
            return None
        await self._initialized(client)
        node = client.get_node_from_key(key)
        if node is None:
            raise CacheStoreError("no cluster node serves this path's slot")
        return node

    async def _initialized(self, client: RedisCluster) -> None:
        if not client.nodes_manager.slots_cache:
            await self._call(self._timeout * 4, client.initialize, force=True)

    # -- reporting ------------------------------------------------------------------------

    def bytes_used(self) -> None:
        return None  # Redis's memory is Redis's to report (INFO memory), shared by instances

    def status(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self._url,
            "cluster": self._config.cluster,
            "state": "down" if self._circuit.is_open else "up",
            "failures": self._circuit.failures,
        }


async def _scan_cluster_node(client: RedisCluster, node: ClusterNode, cursor: int, pattern: bytes) -> tuple[int, list[bytes]]:
    cursors, keys = await client.scan(cursor, match=pattern, count=_SCAN_COUNT, target_nodes=node)
    return int(cursors[node.name]), list(keys)

