"""Firewall: allow or deny the client IP by ordered CIDR rules (SPEC §3 ``firewall``).

The first stage of a route's chain, before CORS and authentication: a denied address
costs one lookup and never reaches a CORS answer, token verification, the throttle
store or the upstream. It decides
on the one client IP the edge resolved (``Exchange.client_ip``: the peer, or what
trusted proxies say, IPv4-mapped IPv6 already folded to IPv4).

Semantics: global rules first, then the route's; the first rule whose network holds
the address decides; when none does, the route's ``default`` (or else the global
one). Compiled once, per address family, into sorted disjoint integer ranges, each
labelled with the verdict of the *first* rule covering it, so a decision is one
binary search however many rules there are, and "first match wins" holds exactly
(overlaps are resolved at compile time, not by scanning at request time).
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import socket
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.models import RouteConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.pipeline import Stage, StageDeps
from gateway.problem import Problem
from gateway.rate_limited_log import RateLimitedLog

__all__ = ["Rule", "RuleSet", "build"]

log = logging.getLogger("gateway.firewall")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Rule:
    network: IPNetwork
    allow: bool
    label: str
    """Where the rule is written, for logs: ``firewall.rules[3]``."""


class _Family:
    """One address family's rules as disjoint ranges: ``starts[i]`` up to ``starts[i+1]``
    gets ``verdicts[i]``, decided by rule ``labels[i]`` (``None``: the default)."""

    __slots__ = ("starts", "verdicts", "labels")

    def __init__(self, rules: Sequence[tuple[int, Rule]], bits: int, default: bool) -> None:
        limit = 1 << bits
        by_index = dict(rules)
        by_start: dict[int, list[tuple[int, int]]] = {}  # range start -> [(rule index, end)]
        points = {0}
        for index, rule in rules:
            start = int(rule.network.network_address)
            end = start + rule.network.num_addresses  # exclusive
            by_start.setdefault(start, []).append((index, end))
            points.add(start)
            if end < limit:
                points.add(end)
        # Sweep the boundaries in order; at each, the active rule with the lowest index
        # (the first written) decides. Expired rules are dropped lazily from the heap
        # top, which is enough: only the top is ever read.
        active: list[tuple[int, int]] = []
        starts: list[int] = []
        verdicts: list[bool] = []
        labels: list[str | None] = []
        for point in sorted(points):
            for entry in by_start.get(point, ()):
                heapq.heappush(active, entry)
            while active and active[0][1] <= point:
                heapq.heappop(active)
            winner = by_index[active[0][0]] if active else None
            verdict = winner.allow if winner is not None else default
            label = winner.label if winner is not None else None
            if labels and labels[-1] == label and verdicts[-1] == verdict:
                continue  # the same decider as the range before: one range
            starts.append(point)
            verdicts.append(verdict)
            labels.append(label)
        self.starts = starts
        self.verdicts = verdicts
        self.labels = labels

    def decide(self, address: int) -> tuple[bool, str | None]:
        i = bisect_right(self.starts, address) - 1
        return self.verdicts[i], self.labels[i]


class RuleSet:
    """Ordered rules compiled for cheap lookups; see the module docstring."""

    __slots__ = ("default", "_v4", "_v6", "size")

    def __init__(self, rules: Sequence[Rule], *, default_allow: bool) -> None:
        self.default = default_allow
        self.size = len(rules)
        numbered = list(enumerate(rules))
        self._v4 = _Family([(i, r) for i, r in numbered if r.network.version == 4], 32, default_allow)
        self._v6 = _Family([(i, r) for i, r in numbered if r.network.version == 6], 128, default_allow)

    def decide(self, client_ip: str) -> tuple[bool, str | None]:
        """(allowed, the rule that decided or ``None`` for the default)."""
        if "%" in client_ip:  # a link-local zone index (fe80::1%eth0)
            client_ip = client_ip.partition("%")[0]
        try:
            if ":" in client_ip:
                packed = socket.inet_pton(socket.AF_INET6, client_ip)
                return self._v6.decide(int.from_bytes(packed, "big"))
            packed = socket.inet_pton(socket.AF_INET, client_ip)
        except OSError:
            # Not an address (a unix-socket peer): no rule can hold it.
            return self.default, None
        return self._v4.decide(int.from_bytes(packed, "big"))


def compile_route_rules(route: RouteConfig, deps: StageDeps) -> RuleSet | None:
    """The route's effective rule set, or ``None`` when it would allow everything."""
    global_fw = deps.config.firewall
    rules = [
        Rule(r.network, r.allows, f"firewall.rules[{i}]") for i, r in enumerate(global_fw.rules)
    ]
    default = global_fw.default
    if route.firewall is not None:
        rules += [
            Rule(r.network, r.allows, f"route {route.name} firewall.rules[{i}]")
            for i, r in enumerate(route.firewall.rules)
        ]
        default = route.firewall.default or default
    if default == "allow" and all(rule.allow for rule in rules):
        return None
    return RuleSet(rules, default_allow=default == "allow")


def build(route: RouteConfig, deps: StageDeps) -> Stage | None:
    ruleset = compile_route_rules(route, deps)
    if ruleset is None:
        return None
    denied = deps.metrics.firewall_denied(route.name)
    route_name = route.name
    # Denies are attacker-driven: every one is counted, only a sample is logged.
    deny_log = RateLimitedLog(log)

    def firewall(request: EdgeRequest, ex: Exchange) -> None:
        allowed, rule = ruleset.decide(ex.client_ip)
        if not allowed:
            denied.inc()
            deny_log.log("denied %s on route %s by %s", ex.client_ip, route_name, rule or "the default")
            raise Problem(403, "the client address is not allowed here")
        return None

    return firewall
