"""What the status page says about the configuration file and its reloads."""

from pathlib import Path

from gateway.reload_history import ReloadHistory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_start_success_and_failure_are_recorded_with_their_times(tmp_path: Path):
    clock = FakeClock()
    history = ReloadHistory(Path("relative/gateway.yaml"), clock=clock)
    first = history.status()
    assert first["file"].endswith("/relative/gateway.yaml") and first["file"].startswith("/")
    assert first["loaded_at"] == first["started_at"] == clock.now
    assert first["reloads"] == {"success": 0, "failure": 0} and first["last_reload"] is None

    clock.now += 30
    history.succeeded()
    clock.now += 10
    history.failed("routes[0].cache.ttl: expected a duration like 30s, got 'soon'")
    clock.now += 5
    shown = history.status()
    assert shown["reloads"] == {"success": 1, "failure": 1}
    # A refused reload leaves the configuration in force, loaded at the last success.
    assert shown["loaded_at"] == first["started_at"] + 30 and shown["loaded_age_s"] == 15.0
    assert shown["last_reload"] == {"result": "failure", "at": clock.now - 5, "age_s": 5.0,
                                    "error": "routes[0].cache.ttl: expected a duration like 30s, got 'soon'"}


def test_a_long_error_list_is_cut_for_the_page():
    history = ReloadHistory(Path("/etc/gateway.yaml"))
    history.failed("x" * 100_000)
    assert len(history.status()["last_reload"]["error"]) == 4000
