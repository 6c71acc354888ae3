"""Firewall: first match wins, global rules before the route's, then the default."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.units import parse_cidr
from gateway.stages import firewall
from gateway.stages.firewall import Rule, RuleSet
from tests.unit.stages.stage_harness import Upstream, call, config_with, deps_for, metric


def ruleset(rules: list[tuple[str, str]], default: str = "allow") -> RuleSet:
    return RuleSet(
        [Rule(parse_cidr(cidr), verdict == "allow", f"rules[{i}]") for i, (verdict, cidr) in enumerate(rules)],
        default_allow=default == "allow",
    )


CASES = [
    # (rules, default, client ip, allowed)
    ([], "allow", "192.0.2.1", True),
    ([], "deny", "192.0.2.1", False),
    ([("deny", "203.0.113.0/24")], "allow", "203.0.113.7", False),
    ([("deny", "203.0.113.0/24")], "allow", "203.0.114.7", True),
    # CIDR edges: first and last address in, the neighbours out
    ([("deny", "203.0.113.0/24")], "allow", "203.0.113.0", False),
    ([("deny", "203.0.113.0/24")], "allow", "203.0.113.255", False),
    ([("deny", "203.0.113.0/24")], "allow", "203.0.112.255", True),
    ([("deny", "203.0.113.0/24")], "allow", "203.0.114.0", True),
    ([("deny", "0.0.0.0/0")], "allow", "0.0.0.0", False),
    ([("deny", "0.0.0.0/0")], "allow", "255.255.255.255", False),
    ([("deny", "0.0.0.0/0")], "allow", "2001:db8::1", True),  # a v4 rule never matches v6
    ([("allow", "10.0.0.1/32")], "deny", "10.0.0.1", True),
    ([("allow", "10.0.0.1/32")], "deny", "10.0.0.2", False),
    # overlapping: the first written wins, whichever is more specific
    ([("allow", "10.1.0.0/16"), ("deny", "10.0.0.0/8")], "allow", "10.1.2.3", True),
    ([("allow", "10.1.0.0/16"), ("deny", "10.0.0.0/8")], "allow", "10.2.0.1", False),
    ([("deny", "10.0.0.0/8"), ("allow", "10.1.0.0/16")], "allow", "10.1.2.3", False),
    ([("deny", "10.0.0.0/8"), ("allow", "10.1.0.0/16")], "deny", "11.0.0.1", False),
    ([("allow", "10.0.0.0/8"), ("deny", "10.1.0.0/16"), ("allow", "10.1.1.0/24")], "deny", "10.1.1.1", True),
    ([("deny", "10.1.0.0/16"), ("allow", "10.0.0.0/8"), ("deny", "10.1.1.0/24")], "deny", "10.255.0.1", True),
    # same network twice: the first decides
    ([("deny", "192.0.2.0/24"), ("allow", "192.0.2.0/24")], "allow", "192.0.2.9", False),
    # IPv6
    ([("allow", "2001:db8::/32")], "deny", "2001:db8:1::5", True),
    ([("allow", "2001:db8::/32")], "deny", "2001:db9::5", False),
    ([("deny", "::/0")], "allow", "::1", False),
    ([("deny", "::/0")], "allow", "127.0.0.1", True),
    ([("deny", "2001:db8::/128")], "allow", "2001:db8::", False),
    ([("deny", "2001:db8::/128")], "allow", "2001:db8::1", True),
    ([("deny", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")], "allow", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", False),
    ([("allow", "2001:db8:1::/48"), ("deny", "2001:db8::/32")], "allow", "2001:db8:1:2::3", True),
    ([("allow", "2001:db8:1::/48"), ("deny", "2001:db8::/32")], "allow", "2001:db8:2::3", False),
    # a rule written as IPv4-mapped IPv6 is folded to IPv4 (the client IP is folded too)
    ([("deny", "::ffff:10.0.0.0/104")], "allow", "10.9.9.9", False),
    ([("deny", "::ffff:10.0.0.0/104")], "allow", "11.0.0.1", True),
    # not an address at all (a unix socket peer): the default
    ([("deny", "0.0.0.0/0"), ("deny", "::/0")], "allow", "unknown", True),
    ([("allow", "0.0.0.0/0")], "deny", "unknown", False),
    # a zone index does not hide a link-local address
    ([("deny", "fe80::/10")], "allow", "fe80::1%eth0", False),
]


@pytest.mark.parametrize(("rules", "default", "client_ip", "allowed"), CASES)
def test_rule_matching(rules, default, client_ip, allowed):
    assert ruleset(rules, default).decide(client_ip)[0] is allowed


def test_the_deciding_rule_is_reported():
    rules = ruleset([("allow", "10.1.0.0/16"), ("deny", "10.0.0.0/8")])
    assert rules.decide("10.1.0.1") == (True, "rules[0]")
    assert rules.decide("10.2.0.1") == (False, "rules[1]")
    assert rules.decide("11.0.0.1") == (True, None)


def test_hundreds_of_rules_compile_to_few_ranges():
    rules = [("deny", f"10.{i}.0.0/16") for i in range(256)] + [("allow", "10.0.0.0/8")]
    compiled = ruleset(rules, default="deny")
    assert compiled.decide("10.200.1.1") == (False, "rules[200]")
    assert compiled.decide("11.0.0.0") == (False, None)
    assert len(compiled._v4.starts) <= 2 * len(rules) + 1


def naive(rules: list[tuple[bool, ipaddress.IPv4Network]], default: bool, address: ipaddress.IPv4Address) -> bool:
    for allow, network in rules:
        if address in network:
            return allow
    return default


networks = st.builds(
    lambda addr, prefix: ipaddress.IPv4Network((addr, prefix), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)


@settings(max_examples=300, deadline=None)
@given(
    rules=st.lists(st.tuples(st.booleans(), networks), max_size=20),
    default=st.booleans(),
    probes=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_compiled_rules_agree_with_first_match_scan(rules, default, probes):
    compiled = RuleSet([Rule(n, allow, "x") for allow, n in rules], default_allow=default)
    edges = [int(n.network_address) for _, n in rules] + [int(n.broadcast_address) for _, n in rules]
    edges += [e + 1 for e in edges if e < 2**32 - 1] + [e - 1 for e in edges if e > 0]
    for probe in probes + edges:
        address = ipaddress.IPv4Address(probe)
        assert compiled.decide(str(address))[0] is naive(rules, default, address), (rules, address)


# --- the stage: global rules, then the route's, then the route's or the global default


@pytest.mark.parametrize(
    ("global_fw", "route_fw", "client_ip", "allowed"),
    [
        ({"rules": [{"deny": "203.0.113.0/24"}]}, None, "203.0.113.5", False),
        ({"rules": [{"deny": "203.0.113.0/24"}]}, None, "198.51.100.1", True),
        # global rules come first: a route cannot re-allow what the global list denies
        ({"rules": [{"deny": "203.0.113.0/24"}]}, {"rules": [{"allow": "203.0.113.5/32"}]}, "203.0.113.5", False),
        # the route's rules apply after the global ones
        ({}, {"rules": [{"deny": "198.51.100.0/24"}]}, "198.51.100.1", False),
        # the route's default replaces the global one...
        ({"default": "deny"}, {"default": "allow"}, "192.0.2.1", True),
        ({"default": "allow"}, {"default": "deny", "rules": [{"allow": "10.0.0.0/8"}]}, "192.0.2.1", False),
        ({"default": "allow"}, {"default": "deny", "rules": [{"allow": "10.0.0.0/8"}]}, "10.0.0.1", True),
        # ...and is inherited when the route does not set one
        ({"default": "deny", "rules": [{"allow": "10.0.0.0/8"}]}, {"rules": [{"allow": "192.0.2.0/24"}]}, "192.0.2.1", True),
        ({"default": "deny", "rules": [{"allow": "10.0.0.0/8"}]}, {"rules": [{"allow": "192.0.2.0/24"}]}, "198.51.100.1", False),
        ({}, {"rules": [{"deny": "2001:db8::/32"}]}, "2001:db8::1", False),
    ],
)
async def test_stage_decides_and_never_calls_upstream_when_denied(global_fw, route_fw, client_ip, allowed):
    config = config_with(firewall=global_fw, route={"firewall": route_fw} if route_fw else None)
    deps = deps_for(config)
    stage = firewall.build(config.routes[0], deps)
    if stage is None:  # compiled away: nothing on this route can be denied
        assert allowed
        return
    upstream = Upstream()
    response, _ = await call(stage, client_ip=client_ip, upstream=upstream)
    if allowed:
        assert response.status == 200 and len(upstream.calls) == 1
        assert metric(deps, "gateway_firewall_denied_total", route="r") == 0
    else:
        assert response.status == 403 and upstream.calls == []
        assert response.content_type == "application/problem+json"
        assert metric(deps, "gateway_firewall_denied_total", route="r") == 1


@pytest.mark.parametrize(
    ("global_fw", "route_fw"),
    [({}, None), ({"rules": [{"allow": "10.0.0.0/8"}]}, None), ({}, {"rules": [{"allow": "10.0.0.0/8"}], "default": "allow"})],
)
def test_no_stage_when_everything_is_allowed(global_fw, route_fw):
    config = config_with(firewall=global_fw, route={"firewall": route_fw} if route_fw else None)
    assert firewall.build(config.routes[0], deps_for(config)) is None
