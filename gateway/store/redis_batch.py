"""Many concurrent commands on one Redis connection: one write, replies in order.

Why not one ``await client.evalsha(...)`` per request: redis-py's command path
(pool checkout, retry wrapper, observability hooks, a write syscall and a read
wake-up per command) costs more CPU than the whole rest of a proxied request on a
small VM, and the bench goal is Redis throttling at >= 0.8x the memory store.
Here every command queued while the previous batch was on the wire leaves in one
write and its replies are read back in order, so under load the per-request cost
is a few microseconds, and an idle gateway still sends each command at once.

Still redis-py underneath: its :class:`~redis.asyncio.connection.Connection`
connects (TLS, AUTH, database selection, RESP negotiation) and its parser (hiredis
when installed) reads replies. Each command stays atomic on the server (a script
runs alone), so batching changes the cost, never the answer.

One batch is in flight at a time and the whole batch shares one deadline
(``store.timeout``). A timeout or a broken connection fails the batch and every
command queued behind it (they would wait on the same dead connection), and drops
the connection; the next batch reconnects. An error *reply* fails only its command.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

__all__ = ["BatchedConnection"]


class BatchedConnection:
    __slots__ = ("_connection", "_timeout", "_queue", "_wakeup", "_task")

    def __init__(self, connection: AbstractConnection, *, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self._queue: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one command already in RESP form; the future gets its reply, or the
        error that stopped it (``ResponseError`` for an error reply)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((packed, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="redis-batch")
        self._wakeup.set()
        return future

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail(self._queue, ConnectionError("the store is closing"))
        self._queue = []
        await self._connection.disconnect()

    async def _run(self) -> None:
        connection = self._connection
        wakeup = self._wakeup
        while True:
            await wakeup.wait()
            wakeup.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                async with asyncio.timeout(self._timeout):
                    await connection.send_packed_command(b"".join([packed for packed, _ in batch]), check_health=False)
                    for _, future in batch:
                        try:
                            reply = await connection.read_response()
                        except ResponseError as exc:
                            if not future.done():
                                future.set_exception(exc)
                        else:
                            if not future.done():
                                future.set_result(reply)
            except asyncio.CancelledError:
                self._fail(batch, ConnectionError("the store is closing"))
                raise
            except Exception as exc:  # timeout, refused, reset, protocol error: the connection is unusable
                with contextlib.suppress(Exception):
                    await connection.disconnect(nowait=True)
                waiting, self._queue = self._queue, []
                self._fail(batch, exc)
                self._fail(waiting, exc)

    @staticmethod
    def _fail(items: list[tuple[bytes, asyncio.Future[Any]]], exc: BaseException) -> None:
        for _, future in items:
            if not future.done():
                future.set_exception(exc)
