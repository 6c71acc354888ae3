"""bench/run.py's pure parts: which targets run at which connection counts, what each
row is compared with (nginx proxy_pass with as many workers, nginx proxy_cache for hit
rows), the checks printed under the table, and when a row is BAD (cache hits that were
not hits, requests missing from the access log).

The harness itself is run by ``make bench``, not here: nothing below measures time.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

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


def _plan(targets, *counts: int) -> dict[str, list[int]]:
    return {t.label: list(counts) for t in targets}


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
    rows = {row.label: row for row in run.summarise(targets, results, _plan(targets, 50))}
    assert rows["gateway: cache_memory"].ratio == pytest.approx(0.25)
    assert rows["gateway: cache_memory"].cache_ratio == pytest.approx(0.2)
    assert rows[run.NGINX_CACHE_LABEL].cache_ratio == pytest.approx(1.0)
    assert rows[run.NGINX_CACHE_LABEL].ratio == pytest.approx(1.25)
    assert rows["gateway: passthrough"].cache_ratio is None
    assert rows[run.NGINX_LABEL].cache_ratio is None


def test_without_the_cache_reference_the_cache_ratio_is_blank() -> None:
    targets = [run.Target(run.NGINX_LABEL, "a", 1), run.Target("gateway: cache_memory", "c", 3, hit_path=True)]
    results = [_result(run.NGINX_LABEL, 40_000), _result("gateway: cache_memory", 10_000)]
    row = run.summarise(targets, results, _plan(targets, 50))[1]
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


# -- which target runs at which connection count --------------------------------------------


def _settings(connections=(50,), latency=(1,), pool=(200,)):
    return run.Settings("wrk", 10, list(connections), 3, 2, Path("report.lua"), 15.0, list(latency), list(pool))


def _round_targets() -> list:
    """The targets of a default round, flagged as start_targets flags them."""
    two = run.reference_label(2, 1)
    return [
        run.Target(run.UPSTREAM_LABEL, "u", 1, latency=True),
        run.Target(run.NGINX_LABEL, "n", 2, latency=True, pool=True),
        run.Target(two, "n2", 3),
        run.Target(run.NGINX_CACHE_LABEL, "nc", 4, hit_path=True),
        run.Target(run.FLOOR_LABEL, "f", 5, latency=True, pool=True),
        run.Target(run.NAIVE_LABEL, "a", 6),
        run.Target("gateway: passthrough", "g1", 7, latency=True, pool=True),
        run.Target("gateway: all_stages", "g2", 8, latency=True, pool=True),
        run.Target("gateway: throttle_redis", "g3", 9),
        run.Target("gateway: workers2", "g4", 10, reference=two),
        run.Target("gateway: cache_memory", "g5", 11, hit_path=True),
    ]


def test_the_plan_measures_the_story_rows_everywhere_and_the_others_at_the_throughput_count() -> None:
    plan = run.connection_plan(_round_targets(), _settings())
    assert plan == {
        run.UPSTREAM_LABEL: [1, 50],
        run.NGINX_LABEL: [1, 50, 200],
        "nginx proxy_pass, 2 workers": [50],
        run.NGINX_CACHE_LABEL: [50],
        run.FLOOR_LABEL: [1, 50, 200],
        run.NAIVE_LABEL: [50],
        "gateway: passthrough": [1, 50, 200],
        "gateway: all_stages": [1, 50, 200],
        "gateway: throttle_redis": [50],
        "gateway: workers2": [50],
        "gateway: cache_memory": [50],
    }
    assert run.plan_counts(plan) == [1, 50, 200]


def test_empty_extra_counts_measure_every_target_at_the_same_counts() -> None:
    args = run.parse_args(["--connections", "1,50", "--latency-connections", "", "--pool-connections", "none"])
    plan = run.connection_plan(_round_targets(), _settings(args.connections, args.latency_connections,
                                                            args.pool_connections))
    assert set(map(tuple, plan.values())) == {(1, 50)}


counts = st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=3)


@given(
    flags=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.integers(0, 3)), min_size=1, max_size=8),
    connections=counts, latency=st.lists(st.integers(1, 300), max_size=2),
    pool=st.lists(st.integers(1, 300), max_size=2),
)
def test_every_row_has_its_reference_measured_at_the_same_count(flags, connections, latency, pool) -> None:
    # Whatever the flags, a ratio is never blank because its reference was not run.
    references = [run.NGINX_LABEL, run.reference_label(2, 1), run.reference_label(4, 1)]
    targets = [run.Target(references[0], "n", 0), run.Target(references[1], "n2", 0),
               run.Target(references[2], "n4", 0), run.Target(run.NGINX_CACHE_LABEL, "c", 0, hit_path=True)]
    for n, (lat, wide, hit, ref) in enumerate(flags):
        targets.append(run.Target(f"gateway: s{n}", "g", 0, latency=lat, pool=wide, hit_path=hit,
                                  reference=references[ref % 3]))
    plan = run.connection_plan(targets, _settings(connections, latency, pool))
    for t in targets:
        assert set(connections) <= set(plan[t.label])
        assert set(plan[t.label]) <= set(plan[t.reference])
        if t.hit_path:
            assert set(plan[t.label]) <= set(plan[run.NGINX_CACHE_LABEL])
        assert plan[t.label] == sorted(set(plan[t.label]))


def test_focus_defaults_to_the_story_scenarios_or_to_the_ones_asked_for() -> None:
    assert run.parse_args([]).focus == ["passthrough", "all_stages"]
    assert run.parse_args(["--scenario", "throttle_redis"]).focus == ["throttle_redis"]
    assert run.parse_args(["--focus", "a, b"]).focus == ["a", "b"]
    defaults = run.parse_args([])
    assert (defaults.connections, defaults.latency_connections, defaults.pool_connections) == ([50], [1], [200])
    assert defaults.floor and defaults.naive


def test_the_estimate_counts_every_planned_run_and_warm_up() -> None:
    settings = _settings()
    plan = {"a": [1, 50, 200], "b": [50]}
    # 3 runs x 4 planned counts x (10 s + 1) + 2 targets x (2 s warm-up + 1)
    assert run.estimate_seconds(plan, settings) == 3 * 4 * 11 + 2 * 3


def test_the_method_line_says_who_runs_at_which_count() -> None:
    text = run.describe_connections(_settings(), ["passthrough", "all_stages"])
    assert text == ("connections 50 for every target; 1 (latency) for upstream direct, nginx proxy_pass, the floor, "
                    "passthrough, all_stages; 200 (above the upstream pool) for nginx proxy_pass, the floor and "
                    "passthrough, all_stages")
    assert run.describe_connections(_settings(latency=(), pool=()), []) == "connections 50 for every target"


# -- matched CPU budgets: nginx with as many workers as the gateway has processes ------------


def test_a_two_process_scenario_gets_a_two_worker_nginx_reference() -> None:
    scenarios = run.load_scenarios(run.SCENARIOS, ["workers2", "passthrough"])
    assert run.extra_reference_workers(scenarios, 1) == [2]
    assert run.extra_reference_workers(scenarios, 2) == [1]
    assert run.extra_reference_workers(scenarios[1:], 1) == []
    assert run.reference_label(2, 1) == "nginx proxy_pass, 2 workers"
    assert run.reference_label(1, 2) == "nginx proxy_pass, 1 worker"
    assert run.reference_label(2, 2) == run.NGINX_LABEL


def test_each_row_divides_by_its_own_reference_in_the_same_run() -> None:
    two = run.reference_label(2, 1)
    targets = [run.Target(run.NGINX_LABEL, "n", 1), run.Target(two, "n2", 2),
               run.Target("gateway: passthrough", "g", 3), run.Target("gateway: workers2", "w", 4, reference=two)]
    rps = {run.NGINX_LABEL: (40_000, 20_000), two: (60_000, 30_000),
           "gateway: passthrough": (8_000, 4_000), "gateway: workers2": (15_000, 7_500)}
    results = [_result(label, values[n], run_no=n) for label, values in rps.items() for n in (0, 1)]
    plan = {run.NGINX_LABEL: [50], two: [50], "gateway: passthrough": [50], "gateway: workers2": [50]}
    rows = {row.label: row for row in run.summarise(targets, results, plan)}
    assert rows["gateway: workers2"].ratio == pytest.approx(0.25)
    assert rows["gateway: passthrough"].ratio == pytest.approx(0.2)
    assert rows[two].ratio == pytest.approx(1.5)  # the 2-worker nginx over the 1-worker one


def test_rows_exist_only_for_planned_counts() -> None:
    targets = [run.Target(run.NGINX_LABEL, "n", 1), run.Target("gateway: workers2", "w", 2)]
    results = [_result(run.NGINX_LABEL, 40_000, connections=c) for c in (1, 50)]
    results.append(_result("gateway: workers2", 9_000))
    rows = run.summarise(targets, results, {run.NGINX_LABEL: [1, 50], "gateway: workers2": [50]})
    assert [(r.label, r.connections) for r in rows] == [(run.NGINX_LABEL, 1), (run.NGINX_LABEL, 50),
                                                        ("gateway: workers2", 50)]
    assert rows[-1].marks == []  # not measured at 1 connection, and not BAD for it


# -- the checks printed under the table ------------------------------------------------------


def _row(label: str, connections: int, p99_ms: float, ratio: float | None = None):
    return run.Row(label, connections, 1000.0, 500.0, p99_ms * 1000, ratio, None, 30.0, 0, 0, [])


def test_above_the_pool_the_p99_is_compared_with_the_throughput_p99() -> None:
    rows = [_row("gateway: passthrough", 50, 10.0), _row("gateway: passthrough", 200, 30.0),
            _row(run.NGINX_LABEL, 50, 2.0), _row(run.NGINX_LABEL, 200, 6.2), _row(run.FLOOR_LABEL, 200, 5.0)]
    lines = run.checks(rows, [run.Target("gateway: passthrough", "g", 1)], 50)
    assert lines == [
        "gateway: passthrough: p99 at 200 connections 30.0 ms = 3.0x its p99 at 50 (within 3x)",
        "nginx proxy_pass: p99 at 200 connections 6.2 ms = 3.1x its p99 at 50 (OVER 3x)",
    ]  # the floor has no 50-connection row here: nothing to compare


@pytest.mark.parametrize(("workers2", "verdict"), [(0.20, "same or better"), (0.16, "same or better"),
                                                   (0.14, "WORSE")])
def test_two_processes_are_judged_against_one_process_ratio(workers2: float, verdict: str) -> None:
    two = run.reference_label(2, 1)
    targets = [run.Target(run.NGINX_LABEL, "n", 1), run.Target(two, "n2", 2),
               run.Target("gateway: passthrough", "g", 3), run.Target("gateway: workers2", "w", 4, reference=two)]
    rows = [_row("gateway: passthrough", 50, 10.0, 0.20), _row("gateway: workers2", 50, 10.0, workers2),
            _row(two, 50, 1.0, 1.6)]
    assert run.checks(rows, targets, 50) == [
        f"gateway: workers2: {workers2:.2f}x nginx proxy_pass, 2 workers at 50 connections, "
        f"against gateway: passthrough 0.20x nginx proxy_pass ({verdict})"]


def test_no_workers_check_without_the_one_process_row() -> None:
    two = run.reference_label(2, 1)
    targets = [run.Target(two, "n2", 2), run.Target("gateway: workers2", "w", 4, reference=two)]
    assert run.checks([_row("gateway: workers2", 50, 10.0, 0.2)], targets, 50) == []


# -- access log rows -----------------------------------------------------------------------


def test_the_access_log_scenario_gets_a_file_in_the_rounds_directory(tmp_path: Path) -> None:
    logged, plain = run.load_scenarios(run.SCENARIOS, ["access_log", "passthrough"])
    path = run.access_log_path(tmp_path, logged)
    assert path == tmp_path / "access-access_log.log"
    assert run.access_log_path(tmp_path, plain) is None
    config = yaml.safe_load(run.render_scenario(logged.template, {"LISTEN": "a:1", "ADMIN": "a:2", "UPSTREAM": "a:3",
                                                                  "ACCESS_LOG": str(path)}))
    assert config["server"]["access_log"] == str(path)
    # Apart from the log, it is the pass-through scenario, so the two rows compare.
    del config["server"]["access_log"]
    base = yaml.safe_load(run.render_scenario(plain.template, {"LISTEN": "a:1", "ADMIN": "a:2", "UPSTREAM": "a:3"}))
    del base["server"]["access_log"]
    assert config == base


def test_lines_logged_counts_only_what_the_run_appended(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b'{"old":1}\n' * 7)
    offset = run.file_size(log)
    with log.open("ab") as f:
        f.write(b'{"new":1}\n' * 5)
    assert run.lines_logged(log, offset, 5) == 5
    assert run.file_size(tmp_path / "missing.log") == 0 and run.count_lines(tmp_path / "missing.log", 0) == 0


def test_lines_logged_waits_for_a_batch_written_after_wrk_stopped(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    first_count_done = threading.Event()
    seen: list[int] = []
    real_count = run.count_lines

    def counting(path: Path, offset: int) -> int:
        seen.append(real_count(path, offset))
        first_count_done.set()  # the writer's batch lands only after the first look found nothing
        return seen[-1]

    def late_writer() -> None:
        first_count_done.wait()
        with log.open("ab") as f:
            f.write(b"{}\n" * 3)

    monkeypatch.setattr(run, "count_lines", counting)
    writer = threading.Thread(target=late_writer)
    writer.start()
    try:
        assert run.lines_logged(log, 0, 3, wait_s=30.0) == 3
    finally:
        first_count_done.set()
        writer.join()
    assert seen[0] == 0 and seen[-1] == 3


def test_a_run_that_logged_fewer_lines_than_requests_makes_the_row_bad() -> None:
    short = _result("gateway: access_log", 5_000, requests=50_000, logged=49_000)
    assert run.not_logged(short) == "49000 log lines for 50000 requests"
    assert "LOG-SHORT" in run.progress_line(short, 3) and "logged=49000/50000" in run.progress_line(short, 3)
    marks = run.row_marks(run.Target("gateway: access_log", "g", 1), [short])
    assert marks == ["BAD (requests missing from the access log)"]
    whole = _result("gateway: access_log", 5_000, requests=50_000, logged=50_012)  # in-flight requests logged too
    assert run.not_logged(whole) is None and "LOG-SHORT" not in run.progress_line(whole, 3)
    assert run.not_logged(_result("gateway: passthrough", 5_000, requests=50_000)) is None


# -- the scenario files --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.stem for p in run.SCENARIOS.glob("*.yaml")))
def test_every_scenario_is_a_config_the_gateway_accepts(name: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import load_config

    monkeypatch.chdir(REPO)  # key files are relative to the repository root, where run.py starts the gateway
    (scenario,) = run.load_scenarios(run.SCENARIOS, [name])
    values = {"LISTEN": "127.0.0.1:18080", "ADMIN": "127.0.0.1:18081", "UPSTREAM": "127.0.0.1:18082",
              "REDIS": "127.0.0.1:6379", "ACCESS_LOG": str(tmp_path / "access.log")}
    conf = tmp_path / "gateway.yaml"
    conf.write_text(run.render_scenario(scenario.template, values))
    load_config(conf, environ={})


def test_all_stages_turns_every_stage_on_and_sends_a_token() -> None:
    (scenario,) = run.load_scenarios(run.SCENARIOS, ["all_stages"])
    config = scenario.config()
    firewall = config["firewall"]
    assert firewall["default"] == "deny" and firewall["rules"][-1] == {"allow": "127.0.0.0/8"}
    assert config["auth"]["jwt"]["algorithms"] == ["RS256"] and "cache_size" not in config["auth"]["jwt"]
    assert config["store"] == {"kind": "memory"} and config["throttle"]["authenticated"]
    (route,) = config["routes"]
    assert route["auth"] == "required" and "cache" not in route
    (header,) = scenario.headers
    assert header.startswith("Authorization: Bearer ey")
    assert config["server"]["access_log"] == "off" and "workers" not in config["server"]


# -- which non-2xx answers a row got -------------------------------------------------------


def test_status_counters_are_summed_by_code_over_routes_and_methods(monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = (
        'gateway_requests_total{code="200",method="GET",route="a"} 100.0\n'
        'gateway_requests_total{code="503",method="GET",route="a"} 7.0\n'
        'gateway_requests_total{route="b",method="HEAD",code="503"} 3.0\n'
        'gateway_requests_created{code="503",method="GET",route="a"} 1.7e+09\n'
        'gateway_upstream_requests_total{code="503",target="t",upstream="u"} 9.0\n'
    )
    monkeypatch.setattr(run, "http_get", lambda address, path: (200, {}, metrics.encode()))
    assert run.read_status_counts("127.0.0.1:1") == {"200": 100, "503": 10}
    monkeypatch.setattr(run, "http_get", lambda address, path: None)
    assert run.read_status_counts("127.0.0.1:1") is None  # explains a row; never fails a run


def test_a_row_with_non_2xx_answers_says_which() -> None:
    grown = run.status_growth({"200": 10, "503": 5}, {"200": 900, "503": 6723, "429": 2, "401": 0})
    assert grown == {"429": 2, "503": 6718}
    assert run.status_growth(None, {"503": 1}) is None
    runs = [_result("gateway: throttle_redis", 4_000, run_no=n, statuses=s)
            for n, s in enumerate([grown, {"503": 800}, None])]
    for r, non_2xx in zip(runs, (6720, 800, 5)):
        r.non_2xx = non_2xx
    assert "non-2xx=6720 (503: 6718, 429: 2)" in run.progress_line(runs[0], 3)
    marks = run.row_marks(run.Target("gateway: throttle_redis", "g", 1), runs)
    assert marks == ["BAD (non-2xx responses (503: 7518, 429: 2))"]
    # Without the gateway's counters (nginx, the floor), the mark stays as it was.
    floor = _result(run.FLOOR_LABEL, 1)
    floor.non_2xx = 3
    assert run.row_marks(run.Target(run.FLOOR_LABEL, "f", 1), [floor]) == ["BAD (non-2xx responses)"]
