"""`gateway schema` describes what the gateway accepts: editors must not flag valid files."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.config import json_schema

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = json.loads(json_schema())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def problems(document):
    return [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]


def test_the_schema_is_a_valid_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_shipped_config_passes_its_own_schema():
    assert problems(yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())) == []


@pytest.mark.parametrize(
    "document",
    [
        {"server": {"listen": "127.0.0.1:8080", "trusted_proxies": "10.0.0.0/8", "shutdown_timeout": 5}},
        {"server": {"listen": ["127.0.0.1:8080", "[::]:8081"], "max_body_size": "10MiB"}},
        {"upstreams": {"m": {"targets": ["http://a:1", {"url": "http://b:2", "weight": 3}], "passive": False}}},
        {"upstreams": {"m": {"targets": ["http://a:1"], "passive": True, "timeouts": {"connect": "250ms"}}}},
        {"routes": [{"name": "r", "match": {"path": "/", "methods": "GET"}, "upstream": "m"}]},
        {"auth": {"jwt": {"algorithms": "HS256", "secret": "x" * 32}}},
    ],
)
def test_shorthands_the_gateway_accepts_pass_the_schema(document):
    document.setdefault("upstreams", {"m": {"targets": ["http://a:1"]}})
    document.setdefault("routes", [{"name": "r", "match": {"path": "/"}, "upstream": "m"}])
    assert problems(document) == []


@pytest.mark.parametrize(
    "document",
    [
        {"surprise": 1},
        {"server": {"listne": "x"}},
        {"upstreams": {"m": {"targets": [{"url": "http://a:1", "wieght": 2}]}}},
    ],
)
def test_unknown_keys_fail_the_schema(document):
    document.setdefault("upstreams", {"m": {"targets": ["http://a:1"]}})
    document.setdefault("routes", [{"name": "r", "match": {"path": "/"}, "upstream": "m"}])
    assert problems(document) != []


def test_defaults_are_shown_as_written_in_yaml():
    server = SCHEMA["$defs"]["ServerConfig"]["properties"]
    assert server["listen"]["default"] == "127.0.0.1:8080"
    assert SCHEMA["$defs"]["AdminConfig"]["properties"]["listen"]["default"] == "127.0.0.1:9901"
