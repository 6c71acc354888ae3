"""``upstreams.NAME.targets`` written as one string: the list one environment variable can carry."""

import pytest

from gateway.config import ConfigError, load_config, parse_config

ROUTE = {"name": "r", "match": {"path": "/"}, "upstream": "app"}


def targets(value):
    config = parse_config({"upstreams": {"app": {"targets": value}}, "routes": [ROUTE]})
    return [(t.url, t.weight) for t in config.upstreams["app"].targets]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://a:1", [("http://a:1", 1)]),
        ("http://a:1,http://b:2", [("http://a:1", 1), ("http://b:2", 1)]),
        (" http://a:1 , http://b:2/v2/ ,", [("http://a:1", 1), ("http://b:2/v2", 1)]),
        ("http://a:1 http://b:2\nhttps://c", [("http://a:1", 1), ("http://b:2", 1), ("https://c", 1)]),
    ],
)
def test_a_string_of_urls_is_a_target_list(value, expected):
    assert targets(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" , ", "upstreams.app.targets: "),  # nothing in it: as an empty list
        ("http://a:1,a:2", "upstreams.app.targets[1].url: expected an http(s) URL like http://127.0.0.1:8001, got 'a:2'"),
        ("http://a:1,http://a:1", "upstreams.app: the same target URL is listed twice"),
    ],
)
def test_errors_in_a_string_name_the_target(value, expected):
    with pytest.raises(ConfigError) as info:
        targets(value)
    found = [str(issue) for issue in info.value.issues]
    assert any(issue.startswith(expected) for issue in found), found


def test_one_environment_variable_fills_the_list(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(
        'upstreams:\n  app:\n    targets: "${UPSTREAM_URLS:?}"\n'
        "routes:\n  - {name: r, match: {path: /}, upstream: app}\n"
    )
    config = load_config(path, environ={"UPSTREAM_URLS": "http://10.0.0.5:8000,http://10.0.0.6:8000"})
    assert [t.url for t in config.upstreams["app"].targets] == ["http://10.0.0.5:8000", "http://10.0.0.6:8000"]
