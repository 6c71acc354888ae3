"""One /status view over several workers' views of the same targets."""

from __future__ import annotations

from typing import Any

from gateway.status_merge import aggregate_status


def target(url: str, **over: Any) -> dict[str, Any]:
    base = {"url": url, "target": url.removeprefix("http://"), "weight": 1, "healthy": True,
            "ejected": False, "ejected_for": 0, "ejections": 0, "in_flight": 0,
            "connections": 0, "idle_connections": 0}
    return {**base, **over}


def status(*targets: dict[str, Any], available: int | None = None) -> dict[str, Any]:
    live = sum(1 for t in targets if t["healthy"] and not t["ejected"])
    return {
        "routes": [{"name": "main", "path": "/", "methods": None, "host": None, "upstream": "app", "stages": []}],
        "upstreams": {"app": {"strategy": "round_robin", "available": live if available is None else available,
                              "targets": list(targets)}},
    }


def merged_target(statuses: list[dict[str, Any]], url: str) -> dict[str, Any]:
    targets = aggregate_status(statuses)["upstreams"]["app"]["targets"]
    return next(t for t in targets if t["url"] == url)


def test_empty():
    assert aggregate_status([]) == {}


def test_counts_sum_and_health_is_any():
    a = status(target("http://a:1", in_flight=2, connections=3, healthy=False))
    b = status(target("http://a:1", in_flight=1, connections=4, ejections=1))
    t = merged_target([a, b], "http://a:1")
    assert (t["in_flight"], t["connections"], t["ejections"]) == (3, 7, 1)
    assert t["healthy"] is True
    assert aggregate_status([a, b])["upstreams"]["app"]["available"] == 1


def test_ejected_only_when_every_worker_ejected_it():
    one = [status(target("http://a:1", ejected=True, ejected_for=12.0)), status(target("http://a:1"))]
    assert merged_target(one, "http://a:1")["ejected"] is False
    both = [status(target("http://a:1", ejected=True, ejected_for=12.0)),
            status(target("http://a:1", ejected=True, ejected_for=3.0))]
    t = merged_target(both, "http://a:1")
    assert t["ejected"] is True and t["ejected_for"] == 12.0
    assert aggregate_status(both)["upstreams"]["app"]["available"] == 0


def test_available_means_healthy_and_not_ejected_in_the_same_worker():
    # Healthy only where it is ejected, and not ejected only where it is unhealthy.
    statuses = [status(target("http://a:1", healthy=True, ejected=True)),
                status(target("http://a:1", healthy=False, ejected=False))]
    assert aggregate_status(statuses)["upstreams"]["app"]["available"] == 0


def test_routes_and_other_keys_come_from_the_first_worker_and_inputs_are_untouched():
    a = status(target("http://a:1", in_flight=1))
    b = status(target("http://a:1", in_flight=1), target("http://b:2"))
    out = aggregate_status([a, b])
    assert out["routes"] == a["routes"]
    assert [t["url"] for t in out["upstreams"]["app"]["targets"]] == ["http://a:1", "http://b:2"]
    assert a["upstreams"]["app"]["targets"][0]["in_flight"] == 1
    assert "_available" not in out["upstreams"]["app"]["targets"][0]
