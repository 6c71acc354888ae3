"""The supervisor's pure parts: how many workers, and what a reload reads."""

from __future__ import annotations

import os
import signal

import pytest
import yaml

from gateway.config import ConfigError
from gateway.supervisor import describe_exit, read_config, worker_count

GOOD = {
    "upstreams": {"app": {"targets": ["http://127.0.0.1:1"]}},
    "routes": [{"name": "main", "match": {"path": "/"}, "upstream": "app"}],
}


@pytest.mark.parametrize(("setting", "expected"), [(1, 1), (2, 2), (16, 16)])
def test_worker_count_of_a_number(setting, expected):
    assert worker_count(setting) == expected


def test_auto_is_the_cpus_we_may_run_on():
    assert worker_count("auto") == len(os.sched_getaffinity(0))


def test_read_config_returns_the_bytes_it_validated(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    data, config = read_config(path)
    assert data == path.read_bytes()
    assert config.routes[0].name == "main"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the file"),
        (b"\xff\xfe", "the file is not UTF-8 text"),
        (b"routes: [oops\n", "invalid YAML"),
        (yaml.safe_dump({**GOOD, "server": {"workers": 0}}).encode(), "server.workers: expected an integer >= 1"),
    ],
)
def test_read_config_errors(tmp_path, content, message):
    path = tmp_path / "g.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("code", "text"),
    [(0, "exited with status 0"), (3, "exited with status 3"),
     (-signal.SIGKILL, "was killed by SIGKILL"), (-200, "was killed by signal 200")],
)
def test_exit_descriptions(code, text):
    assert describe_exit(code) == text
