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


def test_the_newest_check_and_ejection_of_any_worker_are_shown():
    old = {"ok": True, "result": "200", "at": 100.0, "age_s": 4.0, "took_ms": 1.0}
    new = {"ok": False, "result": "status 503", "at": 103.5, "age_s": 0.5, "took_ms": 2.0}
    ejection = {"reason": "3 consecutive failures, last: reset", "at": 90.0, "age_s": 14.0, "duration_s": 30.0}
    statuses = [status(target("http://a:1", last_check=old, last_ejection=None)),
                status(target("http://a:1", last_check=new, last_ejection=ejection))]
    t = merged_target(statuses, "http://a:1")
    assert t["last_check"] == new and t["last_ejection"] == ejection
    none = [status(target("http://a:1", last_check=None)), status(target("http://a:1", last_check=None))]
    assert merged_target(none, "http://a:1")["last_check"] is None


def test_the_store_is_reachable_only_if_every_worker_reaches_it():
    error = {"operation": "take", "error": "TimeoutError", "at": 50.0, "age_s": 2.0}
    up = {"kind": "redis", "url": "redis://r:6379/0", "state": "up", "reachable": True, "failures": 1,
          "last_error": {"operation": "connect", "error": "refused", "at": 1.0, "age_s": 51.0}}
    down = {"kind": "redis", "url": "redis://r:6379/0", "state": "down", "reachable": False, "failures": 2,
            "last_error": error}
    merged = aggregate_status([{**status(target("http://a:1")), "store": up},
                               {**status(target("http://a:1")), "store": down}])["store"]
    assert merged["reachable"] is False and merged["state"] == "down"
    assert merged["failures"] == 3 and merged["last_error"] == error and merged["kind"] == "redis"
    memory = {"kind": "memory", "reachable": True, "last_error": None, "buckets": 2, "max_buckets": 10, "evictions": 0}
    both = aggregate_status([{**status(target("http://a:1")), "store": memory},
                             {**status(target("http://a:1")), "store": {**memory, "buckets": 3}}])["store"]
    assert both["buckets"] == 5 and both["max_buckets"] == 10 and both["reachable"] is True
