"""Config errors name their YAML path and say what was expected."""

import json

import pytest

from gateway.config import ConfigError, json_schema, parse_config

UPSTREAMS = {"menu": {"targets": ["http://127.0.0.1:8001"]}}
ROUTE = {"name": "r", "match": {"path": "/api"}, "upstream": "menu"}


def errors(data):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return [str(i) for i in info.value.issues]


def test_minimal_config_gets_defaults():
    config = parse_config({"upstreams": UPSTREAMS, "routes": [ROUTE]})
    assert config.server.listen == (("127.0.0.1", 8080),)
    assert config.server.max_body_size == 10 * 1024 * 1024
    assert config.server.shutdown_timeout == 15
    assert config.server.workers == 1
    assert config.server.client_ip_header == "X-Forwarded-For"
    assert config.admin.listen == ("127.0.0.1", 9901)
    assert config.upstreams["menu"].timeouts.connect == 2
    assert config.routes[0].match.methods is None


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"server": {"max_body_size": "lots"}}, "server.max_body_size: expected a size like 10MiB, got 'lots'"),
        ({"server": {"shutdown_timeout": "soon"}}, "server.shutdown_timeout: expected a duration like 30s, got 'soon'"),
        ({"server": {"trusted_proxies": ["10.0.0.1/8"]}}, "server.trusted_proxies[0]: expected a CIDR without host bits"),
        ({"server": {"listen": "8080"}}, "server.listen[0]: expected an address like 127.0.0.1:8080"),
        ({"server": {"listne": "x"}}, "server.listne: unknown key (expected one of: listen,"),
        ({"server": {"max_header_size": 10}}, "server.max_header_size: expected at least 1KiB"),
        ({"server": {"workers": 0}}, 'server.workers: expected an integer >= 1 or "auto", got 0'),
        ({"server": {"workers": "many"}}, 'server.workers: expected an integer >= 1 or "auto", got \'many\''),
        ({"server": {"workers": True}}, 'server.workers: expected an integer >= 1 or "auto", got True'),
        ({"server": {"client_ip_header": "X-Real-IP"}}, "server.client_ip_header: expected X-Forwarded-For or Forwarded, got 'X-Real-IP'"),
        ({"server": {"client_ip_header": ["Forwarded"]}}, "server.client_ip_header: expected X-Forwarded-For or Forwarded, got ['Forwarded']"),
        ({"surprise": 1}, "surprise: unknown key"),
        ({"upstreams": {"menu": {"targets": []}}}, "upstreams.menu.targets: "),
        ({"upstreams": {"menu": {"targets": ["ftp://x"]}}}, "upstreams.menu.targets[0].url: expected an http(s) URL"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "host_header": "keep"}}}, "upstreams.menu.host_header: input should be 'preserve' or 'upstream', got 'keep'"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "max_connections": 0}}}, "upstreams.menu.max_connections: input should be greater than or equal to 1, got 0"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "retry": 2}}}, "upstreams.menu.retry: unknown key"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "retries": -1}}}, "upstreams.menu.retries: input should be greater than or equal to 0"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "strategy": "random"}}}, "upstreams.menu.strategy: input should be 'round_robin', 'weighted', 'least_conn', 'p2c' or 'hash', got 'random'"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "strategy": "hash", "hash_on": "cookie"}}}, "upstreams.menu.hash_on: expected client_ip, subject or header:NAME"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "hash_on": "subject"}}}, "upstreams.menu: hash_on only applies to strategy: hash"),
        ({"upstreams": {"menu": {"targets": ["http://a:1", "http://a:1"]}}}, "upstreams.menu: the same target URL is listed twice"),
        ({"upstreams": {"menu": {"targets": [{"url": "http://a:1", "weight": 0}]}}}, "upstreams.menu.targets[0].weight: input should be greater than or equal to 1"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "health_check": {"interval": "often"}}}}, "upstreams.menu.health_check.interval: expected a duration"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "passive": {"failures": 0}}}}, "upstreams.menu.passive.failures: input should be greater than or equal to 1"),
        ({"routes": [{**ROUTE, "upstream": "nope"}]}, "routes[0].upstream: unknown upstream 'nope' (known: menu)"),
        ({"routes": [ROUTE, {**ROUTE}]}, "routes[1].name: duplicate route name 'r' (also routes[0])"),
        ({"routes": [{**ROUTE, "match": {"path": "api"}}]}, "routes[0].match.path: expected an absolute path"),
        ({"routes": [{**ROUTE, "match": {"path": "/a/../../b"}}]}, "routes[0].match.path: path climbs above the root"),
        ({"routes": [{**ROUTE, "match": {"path": "/a", "methods": ["GET", "BAD METHOD"]}}]}, "routes[0].match.methods: expected an HTTP method like GET"),
        ({"routes": [{**ROUTE, "name": "has space"}]}, "routes[0].name: expected a name of letters"),
        ({"routes": [{**ROUTE, "strip_prefx": True}]}, "routes[0].strip_prefx: unknown key (expected one of: name, match, upstream, strip_prefix"),
        ({"routes": [{"match": {"path": "/"}, "upstream": "menu"}]}, "routes[0].name: required key is missing"),
        ({"routes": []}, "routes: "),
        ({"admin": {"listen": "127.0.0.1:8080"}}, "admin.listen: must differ from every server.listen address"),
    ],
)
def test_errors_name_their_path(patch, expected):
    data = {"upstreams": UPSTREAMS, "routes": [ROUTE], **patch}
    found = errors(data)
    assert any(e.startswith(expected) for e in found), found


def test_every_error_is_reported_at_once():
    data = {
        "server": {"max_body_size": "x", "shutdown_timeout": "y"},
        "upstreams": {"menu": {"targets": ["ftp://z"]}},
        "routes": [{**ROUTE, "bogus": 1}],
    }
    assert len(errors(data)) == 4


def test_route_paths_are_normalised_and_methods_upper_cased():
    config = parse_config(
        {"upstreams": UPSTREAMS, "routes": [{**ROUTE, "match": {"path": "/api//menu/", "methods": ["get", "head", "GET"]}}]}
    )
    assert config.routes[0].match.path == "/api/menu"
    assert config.routes[0].match.methods == ("GET", "HEAD")


def test_target_shorthand_and_single_listen():
    config = parse_config(
        {"server": {"listen": "[::]:8080", "access_log": False}, "upstreams": UPSTREAMS, "routes": [ROUTE]}
    )
    assert config.server.listen == (("::", 8080),)
    assert config.server.access_log == "off"
    assert config.upstreams["menu"].targets[0].url == "http://127.0.0.1:8001"


def test_models_are_frozen():
    config = parse_config({"upstreams": UPSTREAMS, "routes": [ROUTE]})
    with pytest.raises(Exception):
        config.server.max_body_size = 1  # type: ignore[misc]


def test_schema_is_json_and_forbids_unknown_keys():
    schema = json.loads(json_schema())
    assert schema["additionalProperties"] is False
    assert "routes" in schema["properties"]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "timeouts": {"connect": 0}}}}, "upstreams.menu.timeouts.connect: expected a duration above 0"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "timeouts": {"response": "0s"}}}}, "upstreams.menu.timeouts.response: expected a duration above 0"),
        ({"upstreams": {"menu": {"targets": ["http://a:1"], "health_check": {"timeout": 0}}}}, "upstreams.menu.health_check.timeout: expected a duration above 0"),
        ({"server": {"access_log": "/nonexistent/dir/access.log"}}, "server.access_log: the directory for the access log does not exist: /nonexistent/dir"),
        ({"server": {"access_log": "  "}}, "server.access_log: expected stdout, stderr, off or a file path"),
        ({"routes": [ROUTE, {**ROUTE, "name": "twin", "match": {"path": "/api/"}}]}, "routes[1].match: matches exactly what routes[0] matches"),
    ],
)
def test_values_that_would_break_every_request_are_refused(patch, expected):
    data = {"upstreams": UPSTREAMS, "routes": [ROUTE], **patch}
    found = errors(data)
    assert any(e.startswith(expected) for e in found), found


def test_secrets_are_never_echoed_in_errors():
    found = errors({"upstreams": UPSTREAMS, "routes": [ROUTE], "admin": {"token": 123456789}})
    assert found and all("123456789" not in e for e in found), found


def test_union_branches_do_not_leak_into_paths():
    found = errors({"upstreams": UPSTREAMS, "routes": [{**ROUTE, "cors": {"allow_origins": "nope", "bogus": 1}}]})
    assert found and all("RouteCors" not in e and "literal[" not in e for e in found), found


@pytest.mark.parametrize(("written", "read"), [("Forwarded", "Forwarded"), ("forwarded", "Forwarded"), ("x-forwarded-for", "X-Forwarded-For")])
def test_client_ip_header_is_a_header_name_in_any_case(written, read):
    config = parse_config({"server": {"client_ip_header": written}, "upstreams": UPSTREAMS, "routes": [ROUTE]})
    assert config.server.client_ip_header == read
