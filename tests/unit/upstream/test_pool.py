"""The keep-alive pool against a real loopback server: its bookkeeping stays true."""

from __future__ import annotations

import asyncio

import pytest

from gateway.upstream.connection import ConnectError
from gateway.upstream.pool import ConnectionPool


@pytest.fixture
async def listener():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


def make_pool(port: int, max_connections: int = 2) -> ConnectionPool:
    return ConnectionPool(host="127.0.0.1", port=port, max_connections=max_connections, connect_timeout=2.0)


async def test_size_counts_connections_in_use_and_returns_to_zero(listener):
    pool = make_pool(listener)
    a = await pool.acquire(1.0)
    b = await pool.acquire(1.0)
    assert pool.size == 2
    pool.release(a)  # not reusable: it never completed an exchange
    pool.release(b)
    assert pool.size == 0


async def test_size_never_goes_negative_when_connections_come_back_after_close(listener):
    pool = make_pool(listener)
    a = await pool.acquire(1.0)
    b = await pool.acquire(1.0)
    await pool.close()
    pool.release(a)
    pool.release(b)
    assert pool.size == 0
    assert a.closed or a.transport is None or a.transport.is_closing()


async def test_a_closed_pool_refuses_new_acquisitions(listener):
    pool = make_pool(listener)
    await pool.close()
    with pytest.raises(ConnectError):
        await pool.acquire(1.0)
    assert pool.size == 0


async def test_a_connection_closed_before_its_request_is_written_is_a_retryable_error(listener):
    # The target reset it between the pool handing it out and the request being
    # written (a target killed under load): nothing was sent, so the error must be one
    # the forwarder retries, never a RuntimeError from a dead transport (a 500).
    from gateway.upstream.connection import UpstreamReset

    pool = make_pool(listener)
    fresh = await pool.acquire(1.0)
    fresh.connection_lost(ConnectionResetError())
    with pytest.raises(ConnectError):
        fresh.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", head_only=False)
    reused = await pool.acquire(1.0)
    reused.reused = True
    reused.connection_lost(None)
    with pytest.raises(UpstreamReset) as caught:
        reused.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", head_only=False)
    assert caught.value.before_response
