"""Fixtures shared by every test layer: real Redis servers (tests/redis_server.py),
and the Hypothesis profiles (``HYPOTHESIS_PROFILE=long`` for a long exploration)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import Phase, settings

from tests.redis_server import RedisClusterNodes, RedisServer

# Property tests here drive real processes over loopback, so no per-example deadline.
# "default" is derandomized without a database: CI and every laptop run the same
# examples, and a failure reproduces from the printed example alone. "long" draws fresh
# examples on every run and keeps failures in .hypothesis/ to replay them. Tests that
# set max_examples themselves keep their own count under either profile. "default"
# skips the explain phase: it reruns failing examples, and against a gateway that hangs
# on them that is minutes for a note the failure message does not need.
settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[phase for phase in Phase if phase is not Phase.explain],
)
settings.register_profile("long", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session. Tests share it, so each uses its own keys."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def make_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``make_redis()`` starts a redis-server this test may stop, pause or restart."""
    started: list[RedisServer] = []

    def make(port: int | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", port=port).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
