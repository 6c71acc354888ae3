"""``firewall:`` (global) and a route's ``firewall:`` -- ordered allow/deny CIDR rules.

Global rules are evaluated first, then the route's; the first rule whose network
holds the client IP decides, and when none does the ``default`` decides: the route's
``default`` when it sets one, else the global one. Rules are written one CIDR each::

    firewall:
      default: allow
      rules:
        - deny: 203.0.113.0/24
        - allow: 2001:db8::/32
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from gateway.config.base import Model
from gateway.config.types import Cidr

__all__ = ["FirewallRule", "FirewallConfig", "RouteFirewallConfig"]

Verdict = Literal["allow", "deny"]


class FirewallRule(Model):
    """Exactly one of ``allow: CIDR`` or ``deny: CIDR``."""

    allow: Cidr | None = None
    deny: Cidr | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("allow", "deny"):
            return value
        raise PydanticCustomError(
            "firewall",
            "expected a rule like {deny: 203.0.113.0/24} or {allow: 10.0.0.0/8} (exactly one key), got {value}",
            {"value": repr(value)},
        )

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        network = self.allow if self.allow is not None else self.deny
        assert network is not None
        return network

    @property
    def allows(self) -> bool:
        return self.allow is not None


class FirewallConfig(Model):
    default: Verdict = "allow"
    rules: tuple[FirewallRule, ...] = ()


class RouteFirewallConfig(Model):
    default: Verdict | None = None
    """``None``: the global ``firewall.default`` applies."""
    rules: tuple[FirewallRule, ...] = ()
