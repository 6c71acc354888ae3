"""Token buckets in Redis (``store.kind: redis``): one exact limit for every process
and every gateway instance that shares the Redis.

- **One round trip, atomic.** Each decision is one ``EVALSHA`` of
  ``token_bucket.lua``; the script reads, refills, takes and writes the bucket with
  no other command in between. After ``NOSCRIPT`` (Redis restarted, or ``SCRIPT
  FLUSH``) the command is sent once more as ``EVAL``, which loads the script again.
- **Redis's clock.** The script reads ``TIME`` itself, so gateway clocks may disagree.
- **Cluster-ready keys.** ``gw:tb:{route|class|caller}``: the hash tag keeps a bucket
  in one slot. Every key has a TTL (the time until its bucket is full again).
- **Bounded.** Every call has ``store.timeout``; after a failure a circuit
  (``circuit.py``) skips Redis until a probe is due, so an outage costs one timeout
  per probe interval, not one per request. Meanwhile ``store.on_error`` decides:
  ``allow`` (let through), ``deny`` (:class:`StoreUnavailable`, a 503 for the
  caller) or ``local`` (this process's own buckets, :class:`MemoryStore`). Every
  failed call counts in ``gateway_store_errors_total{operation}``. A probe that
  succeeds closes the circuit: Redis coming back needs no restart.
- **Cheap.** Concurrent decisions share one write per connection
  (``redis_batch.py``); in a cluster, one batched connection per node.

The redis-py client is created once per process (it does no I/O until used) and
closed with the store. The response cache has a client of its own
(``gateway/cache/redis_store.py``), so its large values never share these batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import AskError, ClusterDownError, NoScriptError, RedisClusterException, TryAgainError

from gateway.config.store import StoreConfig, redacted_url
from gateway.metrics import Metrics
from gateway.store.base import BucketPolicy, Decision, StoreUnavailable
from gateway.store.circuit import PROBE_INTERVAL, Circuit
from gateway.store.memory import MemoryStore
from gateway.store.redis_batch import BatchedConnection
from gateway.store.redis_client import UNAVAILABLE, describe, make_client

__all__ = ["RedisStore", "TOKEN_BUCKET_LUA", "bucket_key"]

log = logging.getLogger("gateway.store")

TOKEN_BUCKET_LUA = resources.files("gateway.store").joinpath("token_bucket.lua").read_text(encoding="utf-8")
_SHA = hashlib.sha1(TOKEN_BUCKET_LUA.encode()).hexdigest().encode()
# EVALSHA <sha> 1 <key> <capacity> <rate>: the constant head of every command; EVAL
# <script> ... after NOSCRIPT, on the same connection, so the script is loaded on
# exactly the server that lacked it.
_EVALSHA_HEAD = b"*6\r\n$7\r\nEVALSHA\r\n$40\r\n" + _SHA + b"\r\n$1\r\n1\r\n"
_EVAL_HEAD = b"*6\r\n$4\r\nEVAL\r\n" + b"$%d\r\n%s\r\n" % (len(TOKEN_BUCKET_LUA.encode()), TOKEN_BUCKET_LUA.encode()) + b"$1\r\n1\r\n"
_PING = b"*1\r\n$4\r\nPING\r\n"

_REROUTE = (AskError, TryAgainError, ClusterDownError)
"""Cluster error replies that one retry through redis-py's cluster client resolves:
it follows the redirection (MOVED is an AskError) and updates its slot table."""


def bucket_key(key: str) -> bytes:
    """The Redis key of a bucket: namespaced, and hash-tagged to one Cluster slot."""
    return b"gw:tb:{" + key.encode("utf-8", "surrogateescape") + b"}"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        config: StoreConfig,
        *,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        if config.url is None:  # StoreConfig refuses this; a hand-built one may not
            raise ValueError("store.kind redis needs store.url")
        self._config = config
        self._url = redacted_url(config.url)
        self._timeout = config.timeout
        self._client = make_client(config)
        self._single: BatchedConnection | None = None
        """The one batched connection outside a cluster."""
        if isinstance(self._client, Redis):
            self._single = BatchedConnection(self._client.connection_pool.make_connection(), timeout=config.timeout)
        self._batches: dict[str, BatchedConnection] = {}
        """Cluster: one batched connection per node, by node name."""
        self._tails: dict[BucketPolicy, bytes] = {}
        self._circuit = Circuit(interval=probe_interval, clock=clock)
        self._on_error = config.on_error
        self._local = MemoryStore(clock=clock) if config.on_error == "local" else None
        self._take_errors = metrics.store_errors("take")
        self._connect_errors = metrics.store_errors("connect")
        self._last_error: tuple[str, str, float] | None = None
        """(operation, description, wall-clock time) of the latest failed call, for the
        status page: the counter says how often, this says what the last one was."""

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client (for tests)."""
        return self._client

    @property
    def available(self) -> bool:
        """False while the circuit is open (Redis failed and has not answered a probe)."""
        return not self._circuit.is_open

    async def start(self) -> None:
        try:
            # Cluster discovery is a few round trips (CLUSTER SLOTS, COMMAND); a single
            # server's check is one batched PING, itself bounded by store.timeout.
            async with asyncio.timeout(self._timeout * 4):
                if self._single is not None:
                    await self._single.submit(_PING)
                else:
                    await self._client.initialize()
                    await self._client.execute_command("PING")
        except UNAVAILABLE as exc:
            self._connect_errors.inc()
            self._last_error = ("connect", describe(exc), time.time())
            self._circuit.failed()
            log.warning(
                "store %s is unreachable at start-up (%s); throttling applies on_error=%s until it answers",
                self._url, describe(exc), self._on_error,
            )

    async def close(self) -> None:
        batches, self._batches = list(self._batches.values()), {}
        if self._single is not None:
            batches.append(self._single)
        for batch in batches:
            await batch.close()
        await self._client.aclose()

    async def take(self, key: str, policy: BucketPolicy) -> Decision:
        circuit = self._circuit
        if circuit.allows():
            try:
                reply = await self._evaluate(bucket_key(key), policy)
            except UNAVAILABLE as exc:
                self._failed(exc)
            else:
                if circuit.is_open:
                    circuit.succeeded()
                    log.info("store %s answers again; throttling uses it", self._url)
                return Decision(reply[0] == 1, reply[1], reply[2] / 1000.0, reply[3] / 1000.0)
        return self._outage(key, policy)

    async def _evaluate(self, key: bytes, policy: BucketPolicy) -> list[int]:
        tail = self._tails.get(policy)
        if tail is None:
            tail = self._tails[policy] = _bulk(str(policy.capacity).encode()) + _bulk(repr(policy.refill_per_second).encode())
        batch = self._single
        if batch is None:
            batch = await self._node_batch(key)
        args = _bulk(key) + tail
        try:
            return await batch.submit(_EVALSHA_HEAD + args)
        except NoScriptError:
            return await batch.submit(_EVAL_HEAD + args)
        except _REROUTE:
            async with asyncio.timeout(self._timeout):
                return await self._client.execute_command(
                    "EVAL", TOKEN_BUCKET_LUA, 1, key, policy.capacity, repr(policy.refill_per_second)
                )

    async def _node_batch(self, key: bytes) -> BatchedConnection:
        """Cluster: the batched connection to the node that serves ``key``'s slot."""
        client = self._client
        assert isinstance(client, RedisCluster)
        if not client.nodes_manager.slots_cache:
            async with asyncio.timeout(self._timeout * 4):
                await client.initialize()
        node = client.get_node_from_key(key)
        if node is None:
            raise RedisClusterException("no node serves this key's slot")
        batch = self._batches.get(node.name)
        if batch is None:
            batch = self._batches[node.name] = BatchedConnection(node.acquire_connection(), timeout=self._timeout)
        return batch

    def _failed(self, exc: BaseException) -> None:
        self._take_errors.inc()
        self._last_error = ("take", describe(exc), time.time())
        was_open = self._circuit.is_open
        self._circuit.failed()
        if not was_open:
            log.warning(
                "store %s failed (%s); throttling applies on_error=%s, probing every %gs",
                self._url, describe(exc), self._on_error, self._circuit.interval,
            )

    def _outage(self, key: str, policy: BucketPolicy) -> Decision:
        if self._local is not None:
            return self._local.take_now(key, policy)
        if self._on_error == "allow":
            # Not counted anywhere: say the bucket is full rather than invent a number.
            return Decision(True, policy.capacity, 0.0, 0.0)
        raise StoreUnavailable("the rate-limit store is unreachable", retry_after=self._circuit.retry_after())

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "url": self._url,
            "cluster": self._config.cluster,
            "state": "down" if self._circuit.is_open else "up",
            "reachable": not self._circuit.is_open,
            "on_error": self._on_error,
            "failures": self._circuit.failures,
            "last_error": None,
        }
        if self._last_error is not None:
            operation, error, at = self._last_error
            out["last_error"] = {"operation": operation, "error": error, "at": round(at, 3),
                                 "age_s": round(max(0.0, time.time() - at), 1)}
        if self._local is not None:
            out["local_buckets"] = len(self._local)
        return out

