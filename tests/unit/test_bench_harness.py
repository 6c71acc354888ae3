"""bench/run.py's cache-hit rows: the nginx proxy_cache reference, the × cache ratio,
and the checks that a hit row measured hits.

The harness itself is run by ``make bench``, not here; these are the pure parts that
decide what a hit row is compared with and when it is BAD.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run = _load_harness()


def _result(label: str, rps: float, *, run_no: int = 0, connections: int = 50, **extra: object):
    return run.RunResult(label, connections, run_no, rps, 1000.0, 2000.0, 20.0, 0, 0, 0.0, 0.0, **extra)


# -- the nginx reference -------------------------------------------------------------------


def test_proxy_pass_reference_has_no_cache() -> None:
    block = run.proxy_block(8080, "127.0.0.1:9000")
    assert "proxy_pass http://bench_upstream;" in block
    assert "proxy_cache" not in block and "X-Cache" not in block


def test_proxy_cache_reference_is_the_same_proxy_with_a_cache_in_its_prefix(tmp_path: Path) -> None:
    plain = run.proxy_block(8080, "127.0.0.1:9000")
    cached = run.proxy_block(8080, "127.0.0.1:9000", tmp_path / "cache")
    assert f"proxy_cache_path {tmp_path / 'cache'} keys_zone=bench_cache:1m;" in cached
    for line in ("proxy_cache bench_cache;", "proxy_cache_valid 200 1h;", "add_header X-Cache $upstream_cache_status;"):
        assert line in cached
    # Everything the proxy_pass reference has, the cache reference has too.
    assert all(line.strip() in cached for line in plain.splitlines())


@pytest.mark.skipif(shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin") is None, reason="no nginx")
def test_nginx_accepts_the_proxy_cache_reference(tmp_path: Path) -> None:
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin")
    conf = tmp_path / "nginx.conf"
    conf.write_text(run.nginx_conf(tmp_path, 1, run.proxy_block(8080, "127.0.0.1:9000", tmp_path / "cache")))
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("name", "caches"), [("cache_memory", True), ("cache_redis", True), ("passthrough", False),
                                              ("throttle_redis", False)])
def test_a_scenario_with_a_cached_route_is_a_hit_row(name: str, caches: bool) -> None:
    (scenario,) = run.load_scenarios(run.SCENARIOS, [name])
    assert scenario.caches is caches


def test_gateway_processes_reads_the_scenario() -> None:
    (two,) = run.load_scenarios(run.SCENARIOS, ["workers2"])
    (one,) = run.load_scenarios(run.SCENARIOS, ["cache_memory"])
    assert (run.gateway_processes(two), run.gateway_processes(one)) == (2, 1)


# -- the ratios ----------------------------------------------------------------------------


def test_hit_rows_get_a_same_run_ratio_to_nginx_proxy_cache() -> None:
    targets = [
        run.Target(run.NGINX_LABEL, "a", 1),
        run.Target(run.NGINX_CACHE_LABEL, "b", 2, hit_path=True),
        run.Target("gateway: cache_memory", "c", 3, hit_path=True),
        run.Target("gateway: passthrough", "d", 4),
    ]
    # Absolute RPS drifts between runs; the same-run ratios do not.
    rps = {run.NGINX_LABEL: (40_000, 20_000), run.NGINX_CACHE_LABEL: (50_000, 25_000),
           "gateway: cache_memory": (10_000, 5_000), "gateway: passthrough": (4_000, 2_000)}
    results = [_result(label, values[n], run_no=n) for label, values in rps.items() for n in (0, 1)]
    rows = {row.label: row for row in run.summarise(targets, results, [50])}
    assert rows["gateway: cache_memory"].ratio == pytest.approx(0.25)
    assert rows["gateway: cache_memory"].cache_ratio == pytest.approx(0.2)
    assert rows[run.NGINX_CACHE_LABEL].cache_ratio == pytest.approx(1.0)
    assert rows[run.NGINX_CACHE_LABEL].ratio == pytest.approx(1.25)
    assert rows["gateway: passthrough"].cache_ratio is None
    assert rows[run.NGINX_LABEL].cache_ratio is None


def test_without_the_cache_reference_the_cache_ratio_is_blank() -> None:
    targets = [run.Target(run.NGINX_LABEL, "a", 1), run.Target("gateway: cache_memory", "c", 3, hit_path=True)]
    results = [_result(run.NGINX_LABEL, 40_000), _result("gateway: cache_memory", 10_000)]
    row = run.summarise(targets, results, [50])[1]
    assert (row.ratio, row.cache_ratio) == (pytest.approx(0.25), None)
    assert run.row_cells(row)[run.COLUMNS.index("× cache")] == "—"


def test_tables_have_a_cell_for_every_column() -> None:
    row = run.Row("gateway: cache_memory", 50, 10_000.0, 1000.0, 2000.0, 0.25, 0.2, 30.0, 0, 0, [])
    cells = run.row_cells(row)
    assert len(cells) == len(run.COLUMNS)
    assert cells[run.COLUMNS.index("× nginx")] == "0.25" and cells[run.COLUMNS.index("× cache")] == "0.20"
    header, align, line = run.markdown_table([row]).splitlines()
    assert header.count("|") == align.count("|") == line.count("|")


# -- did a hit row measure hits? -----------------------------------------------------------


def test_a_run_of_hits_only_is_clean() -> None:
    # Hits may exceed wrk's count by the requests in flight when wrk stopped.
    r = _result("gateway: cache_memory", 10_000, requests=100_000, cache={"hit": 100_040, "miss": 0, "bypass": 0})
    assert run.not_hits(r) is None
    assert "hits=100040/100000" in run.progress_line(r, 3)


@pytest.mark.parametrize("cache", [{"hit": 99_000}, {"hit": 100_000, "miss": 1}, {"hit": 100_000, "bypass": 3}])
def test_a_run_with_anything_but_hits_makes_the_row_bad(cache: dict[str, int]) -> None:
    r = _result("gateway: cache_memory", 10_000, requests=100_000, cache=cache)
    assert run.not_hits(r) is not None
    assert "NOT-ALL-HITS" in run.progress_line(r, 3)
    marks = run.row_marks(run.Target("gateway: cache_memory", "c", 3, hit_path=True), [r])
    assert marks == ["BAD (requests that were not cache hits)"]


def test_runs_without_cache_counters_are_not_judged_on_hits() -> None:
    assert run.not_hits(_result(run.NGINX_CACHE_LABEL, 50_000, requests=500_000)) is None


def test_cache_counters_are_summed_over_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = (
        "# TYPE gateway_cache_requests_total counter\n"
        'gateway_cache_requests_total{result="hit",route="a"} 10.0\n'
        'gateway_cache_requests_total{result="miss",route="a"} 1.0\n'
        'gateway_cache_requests_total{route="b",result="hit"} 5.0\n'
        'gateway_cache_requests_created{result="hit",route="a"} 1.7e+09\n'
    )
    monkeypatch.setattr(run, "http_get", lambda address, path: (200, {}, metrics.encode()))
    assert run.read_cache_counts("127.0.0.1:1") == {"hit": 15, "miss": 1}


def test_unreadable_cache_counters_fail_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "http_get", lambda address, path: None)
    with pytest.raises(RuntimeError, match="cache counters"):
        run.read_cache_counts("127.0.0.1:1")
