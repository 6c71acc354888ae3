"""The status page's document: /status joined with the figures of the last minute."""

from gateway.metrics import Metrics
from gateway.metrics_window import Snapshot, Window, take_snapshot
from gateway.status_live import live_status


def runtime_status():
    target = {"url": "http://127.0.0.1:8001", "target": "127.0.0.1:8001", "weight": 1, "healthy": True,
              "ejected": False, "ejected_for": 0, "ejections": 0, "in_flight": 1, "connections": 2,
              "idle_connections": 1, "last_check": None, "last_ejection": None}
    return {
        "routes": [{"name": "menu", "path": "/api/menu", "methods": ["GET"], "host": None, "upstream": "app",
                    "stages": ["throttle"]}],
        "upstreams": {"app": {"strategy": "round_robin", "available": 1, "targets": [
            target, {**target, "url": "http://127.0.0.1:8002", "target": "127.0.0.1:8002", "healthy": False},
            {**target, "url": "http://127.0.0.1:8003", "target": "127.0.0.1:8003", "ejected": True},
        ]}},
        "store": {"kind": "memory", "reachable": True, "last_error": None},
    }


def window():
    metrics = Metrics()
    for _ in range(3):
        metrics.observe_request("menu", "GET", 200, 0.01)
    metrics.observe_request("none", "GET", 404, 0.0)
    metrics.observe_upstream("app", "127.0.0.1:8001", "503", 0.01)
    metrics.store_errors("take").inc()
    return Window(Snapshot(0.0, {}), take_snapshot(metrics.registry.collect(), at=20.0))


def test_routes_targets_store_and_config_in_one_document():
    config = {"file": "/etc/gateway.yaml", "reloads": {"success": 0, "failure": 0}}
    doc = live_status(status=runtime_status(), reasons=[], window=window(), config=config)
    assert doc["ready"] is True and doc["window_s"] == 20.0 and doc["workers"] is None
    menu, unmatched = doc["routes"]
    assert menu["name"] == "menu" and menu["requests"] == 3 and menu["rate"] == 0.15 and not menu["unmatched"]
    # Requests no route took get their own row.
    assert unmatched["name"] == "none" and unmatched["unmatched"] and unmatched["requests"] == 1
    assert doc["totals"]["requests"] == 4
    (app,) = doc["upstreams"]
    assert [t["state"] for t in app["targets"]] == ["up", "down", "ejected"]
    assert app["targets"][0]["requests"] == 1 and app["targets"][0]["errors"] == 1
    assert app["targets"][0]["in_flight"] == 1  # what /status says, kept
    assert doc["store"]["recent_errors"] == 1 and doc["store"]["kind"] == "memory"
    assert doc["config"] == config


def test_not_ready_carries_the_reasons_and_workers_are_listed():
    workers = [{"slot": 0, "pid": 10, "state": "ready"}, {"slot": 1, "pid": None, "state": "restarting"}]
    doc = live_status(status=runtime_status(), reasons=["worker 1 is restarting"], window=window(), config={},
                      workers=workers)
    assert doc["ready"] is False and doc["reasons"] == ["worker 1 is restarting"]
    assert doc["workers"] == workers
