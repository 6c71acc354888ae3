"""Keep-alive connections to one target, bounded by ``max_connections``.

Idle connections are reused last-in first-out (the most recently used one is the
least likely to have been closed by the upstream's idle timeout) and closed after
``IDLE_TIMEOUT`` unused. When every connection is busy, callers queue in FIFO order
for the next one released, for at most the wait they are given (``timeouts.queue``);
running out of it is :class:`QueueTimeout`, the gateway's own congestion, which is
deliberately not an :class:`UpstreamError`: the target did nothing wrong.

A connection goes back to the idle list only if its last exchange ended cleanly in
both directions (see :mod:`gateway.upstream.connection`).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque

from gateway.upstream.connection import ConnectError, ConnectTimeout, UpstreamConnection

__all__ = ["ConnectionPool", "IDLE_TIMEOUT", "QueueTimeout"]

IDLE_TIMEOUT = 30.0


class QueueTimeout(Exception):
    """Every connection to the target stayed busy for the whole wait."""


class ConnectionPool:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        max_connections: int,
        connect_timeout: float,
        ssl: object | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._idle: deque[tuple[UpstreamConnection, float]] = deque()
        self._size = 0
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self._closed = False
        self._reaper: asyncio.TimerHandle | None = None

    @property
    def size(self) -> int:
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def closed(self) -> bool:
        return self._closed

    def take_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection, without awaiting (the common case)."""
        idle = self._idle
        while idle:
            conn, _ = idle.pop()
            if not conn.closed:
                return conn
            self._size -= 1
        return None

    async def acquire(self, wait: float) -> UpstreamConnection:
        if self._closed:
            raise ConnectError(f"the pool for {self.host}:{self.port} is closed")
        conn = self.take_idle()
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        if self._size < self.max_connections:
            return await self._connect(loop)
        waiter: asyncio.Future[UpstreamConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(wait, _expire_wait, waiter)
        try:
            conn = await waiter
        except asyncio.CancelledError:
            # Cancelled after being handed a connection or a slot: give it back.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is None:
                    self._slot_freed()
                else:
                    self.release(handed)
            raise
        finally:
            timer.cancel()
        if conn is None:  # a slot was freed rather than a connection handed over
            return await self._connect(loop)
        return conn

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
        self._size += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(loop),
                    self.host,
                    self.port,
                    ssl=self._ssl,  # type: ignore[arg-type]
                    server_hostname=self._server_hostname if self._ssl else None,
                ),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            self._slot_freed()
            raise ConnectTimeout(f"timed out connecting to {self.host}:{self.port}") from None
        except (OSError, socket.gaierror) as exc:
            self._slot_freed()
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from None
        except BaseException:
            self._slot_freed()
            raise
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back after an exchange; it is kept only if still usable."""
        if conn.reusable and conn.request_done and not conn.closed and not self._closed:
            conn.reused = True
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_result(conn)
                    return
            # The connection's own loop: asyncio.get_running_loop() costs a getpid()
            # system call on every request.
            self._idle.append((conn, conn.loop.time()))
            self._schedule_reaper()
            return
        if not conn.closed:
            conn.abort()
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._size -= 1
        if self._closed:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._size += 1  # reserved for the waiter, which will connect
                waiter.set_result(None)
                return

    def _schedule_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 2, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        now = asyncio.get_running_loop().time()
        keep: deque[tuple[UpstreamConnection, float]] = deque()
        for conn, since in self._idle:
            if conn.closed:
                self._size -= 1
            elif now - since > IDLE_TIMEOUT:
                conn.abort()
                self._size -= 1
            else:
                keep.append((conn, since))
        self._idle = keep
        if keep:
            self._schedule_reaper()

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        while self._idle:
            conn, _ = self._idle.pop()
            conn.abort()
            self._size -= 1
        # Connections still in use count until their exchanges release them.
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(ConnectError("the upstream pool is closing"))
        self._waiters.clear()


def _expire_wait(waiter: asyncio.Future[UpstreamConnection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(QueueTimeout("no connection to the target became free in time"))
