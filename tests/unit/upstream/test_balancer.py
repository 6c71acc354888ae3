import random
from collections import Counter

import pytest

from gateway.upstream.balancer import ConsistentHash, LeastConn, PowerOfTwo, Target, WeightedRoundRobin, make_balancer


def targets(*weights):
    return tuple(
        Target.from_url(f"http://127.0.0.1:{9000 + i}", weight=w, max_connections=1, connect_timeout=1)
        for i, w in enumerate(weights)
    )


def labels(picks):
    return [t.label.rsplit(":", 1)[1] for t in picks]


def test_round_robin_rotates():
    ts = targets(1, 1, 1)
    rr = WeightedRoundRobin(ts)
    assert labels(rr.pick(ts, None) for _ in range(6)) == ["9000", "9001", "9002"] * 2


def test_smooth_weighted_spreads_the_heavy_target():
    ts = targets(5, 1, 1)
    rr = WeightedRoundRobin(ts)
    # nginx's smooth weighted round robin sequence for weights 5,1,1
    assert labels(rr.pick(ts, None) for _ in range(7)) == ["9000", "9000", "9001", "9000", "9002", "9000", "9000"]


@pytest.mark.parametrize("weights", [(1, 1), (3, 1), (2, 3, 5)])
def test_weighted_shares_are_exact_over_a_cycle(weights):
    ts = targets(*weights)
    rr = make_balancer("weighted", ts)
    counts = Counter(rr.pick(ts, None) for _ in range(sum(weights) * 100))
    assert [counts[t] for t in ts] == [w * 100 for w in weights]


def test_round_robin_over_fewer_candidates():
    ts = targets(1, 1, 1)
    rr = WeightedRoundRobin(ts)
    assert set(labels(rr.pick(ts[:2], None) for _ in range(4))) == {"9000", "9001"}


def test_least_conn_picks_the_least_loaded_per_weight():
    ts = targets(1, 1, 2)
    ts[0].in_flight, ts[1].in_flight, ts[2].in_flight = 3, 1, 3
    lc = LeastConn(ts)
    assert lc.pick(ts, None) is ts[1]  # 1/1 beats 3/2 and 3/1
    ts[1].in_flight = 5
    assert lc.pick(ts, None) is ts[2]  # 3/2 beats 3/1 and 5/1


def test_least_conn_breaks_ties_by_rotation():
    ts = targets(1, 1, 1)
    lc = LeastConn(ts)
    assert len({lc.pick(ts, None) for _ in range(3)}) == 3


def test_p2c_never_picks_the_busier_of_two():
    ts = targets(1, 1)
    ts[0].in_flight = 10
    p2c = PowerOfTwo(ts, rng=random.Random(1))
    assert all(p2c.pick(ts, None) is ts[1] for _ in range(50))


def test_p2c_spreads_when_loads_are_equal():
    ts = targets(1, 1, 1, 1)
    p2c = PowerOfTwo(ts, rng=random.Random(7))
    counts = Counter(p2c.pick(ts, None) for _ in range(4000))
    assert all(800 < counts[t] < 1200 for t in ts)


def test_hash_is_sticky_per_key():
    ts = targets(1, 1, 1)
    h = ConsistentHash(ts)
    for key in ("1.2.3.4", "5.6.7.8", "user-42"):
        assert len({h.pick(ts, key) for _ in range(10)}) == 1


def test_hash_spreads_keys():
    ts = targets(1, 1, 1)
    h = ConsistentHash(ts)
    counts = Counter(h.pick(ts, f"10.0.{i // 256}.{i % 256}") for i in range(3000))
    assert all(700 < counts[t] < 1300 for t in ts)


def test_hash_moves_only_the_removed_targets_share():
    ts = targets(1, 1, 1, 1)
    h = ConsistentHash(ts)
    keys = [f"client-{i}" for i in range(2000)]
    before = {k: h.pick(ts, k) for k in keys}
    without = tuple(t for t in ts if t is not ts[2])
    after = {k: h.pick(without, k) for k in keys}
    moved = [k for k in keys if before[k] is not after[k]]
    assert all(before[k] is ts[2] for k in moved)
    assert len(moved) == sum(1 for k in keys if before[k] is ts[2])


def test_hash_honours_weights():
    ts = targets(3, 1)
    h = ConsistentHash(ts)
    counts = Counter(h.pick(ts, f"k{i}") for i in range(4000))
    assert 2.2 < counts[ts[0]] / counts[ts[1]] < 4.0
