"""``firewall`` sections: one CIDR per rule, strict CIDRs, errors at their path."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from gateway.config import ConfigError, parse_config

BASE: dict[str, Any] = {"upstreams": {"a": {"targets": ["http://127.0.0.1:9"]}}}


def parse(firewall: Any = None, route_firewall: Any = None):
    data = dict(BASE)
    route: dict[str, Any] = {"name": "r", "match": {"path": "/"}, "upstream": "a"}
    if route_firewall is not None:
        route["firewall"] = route_firewall
    data["routes"] = [route]
    if firewall is not None:
        data["firewall"] = firewall
    return parse_config(data)


def test_defaults_allow_everything():
    config = parse()
    assert config.firewall.default == "allow" and config.firewall.rules == ()
    assert config.routes[0].firewall is None


def test_rules_keep_their_order_and_fold_mapped_addresses():
    config = parse(
        {"default": "deny", "rules": [{"allow": "10.0.0.0/8"}, {"deny": "2001:db8::/32"}, {"allow": "::ffff:192.0.2.0/120"}]},
        {"rules": [{"deny": "10.1.0.0/16"}]},
    )
    rules = config.firewall.rules
    assert [(r.allows, r.network) for r in rules] == [
        (True, ipaddress.ip_network("10.0.0.0/8")),
        (False, ipaddress.ip_network("2001:db8::/32")),
        (True, ipaddress.ip_network("192.0.2.0/24")),
    ]
    route_fw = config.routes[0].firewall
    assert route_fw is not None and route_fw.default is None  # inherits the global default


@pytest.mark.parametrize(
    ("firewall", "route_firewall", "expected"),
    [
        ({"default": "block"}, None, "firewall.default: input should be 'allow' or 'deny'"),
        ({"rules": [{"deny": "10.0.0.1/8"}]}, None, "firewall.rules[0].deny: expected a CIDR without host bits, got '10.0.0.1/8' (did you mean 10.0.0.0/8?)"),
        ({"rules": [{"deny": "10.0.0.0/33"}]}, None, "firewall.rules[0].deny: expected a CIDR like 10.0.0.0/8"),
        ({"rules": [{"allow": "10.0.0.0/8", "deny": "10.0.0.0/8"}]}, None, "firewall.rules[0]: expected a rule like {deny: 203.0.113.0/24}"),
        ({"rules": [{"block": "10.0.0.0/8"}]}, None, "firewall.rules[0]: expected a rule like"),
        ({"rules": ["10.0.0.0/8"]}, None, "firewall.rules[0]: expected a rule like"),
        ({"rules": [{"allow": "10.0.0.0/8"}, {"deny": "nope"}]}, None, "firewall.rules[1].deny: expected a CIDR"),
        (None, {"rules": [{"deny": "2001:db8::1/32"}]}, "routes[0].firewall.rules[0].deny: expected a CIDR without host bits"),
        (None, {"default": "maybe"}, "routes[0].firewall.default"),
        (None, {"allow": "10.0.0.0/8"}, "routes[0].firewall.allow: unknown key"),
    ],
)
def test_mistakes_are_reported_at_their_path(firewall, route_firewall, expected):
    with pytest.raises(ConfigError) as info:
        parse(firewall, route_firewall)
    found = [str(i) for i in info.value.issues]
    assert any(expected in issue for issue in found), found
