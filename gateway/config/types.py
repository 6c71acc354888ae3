"""Annotated pydantic types for the YAML value grammars.

Each wraps a parser from ``units.py`` so that a bad value fails with the parser's
own operator-facing message (no "Value error, " prefix) and shows up in
``gateway schema`` as a string with a pattern an editor can check.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from gateway.config.units import (
    Rate,
    UnitError,
    parse_cidr,
    parse_duration,
    parse_host_port,
    parse_rate,
    parse_size,
)

__all__ = ["Duration", "PositiveDuration", "Size", "RateValue", "Cidr", "HostPort", "Rate"]

T = TypeVar("T")


def _wrap(parser: Callable[[Any], T], kind: str) -> Callable[[Any], T]:
    def validate(value: Any) -> T:
        try:
            return parser(value)
        except UnitError as exc:
            raise PydanticCustomError(kind, str(exc)) from None

    return validate


Duration = Annotated[
    float,
    BeforeValidator(_wrap(parse_duration, "duration")),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "examples": ["250ms", "30s", "5m"],
        }
    ),
]
"""Seconds, written ``250ms`` / ``30s`` / ``5m`` / ``1h``."""

def _positive_duration(value: Any) -> float:
    seconds = _wrap(parse_duration, "duration")(value)
    if seconds <= 0:
        raise PydanticCustomError(
            "duration", "expected a duration above 0 (a positive duration like 30s), got {value}", {"value": repr(value)}
        )
    return seconds


PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "examples": ["50ms", "2s", "30s"],
        }
    ),
]
"""A duration that must be above zero: a timeout or an interval of 0 would fail
every request (or spin), so it is refused where it is written."""

Size = Annotated[
    int,
    BeforeValidator(_wrap(parse_size, "size")),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": r"^\s*\d+\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$"}, {"type": "integer", "minimum": 0}]}
    ),
]
"""Bytes, written ``512KiB`` / ``10MiB``."""

RateValue = Annotated[
    Rate,
    BeforeValidator(_wrap(parse_rate, "rate")),
    WithJsonSchema(
        {"type": "string", "pattern": r"^\d+/(second|minute|hour|day|s|m|h|d)$"}
    ),
]
"""Events per period, written ``60/minute`` or ``60/m``."""

Cidr = Annotated[
    ipaddress.IPv4Network | ipaddress.IPv6Network,
    BeforeValidator(_wrap(parse_cidr, "cidr")),
    WithJsonSchema({"type": "string", "examples": ["10.0.0.0/8", "2001:db8::/32"]}),
]

HostPort = Annotated[
    tuple[str, int],
    BeforeValidator(_wrap(parse_host_port, "address")),
    WithJsonSchema({"type": "string", "examples": ["127.0.0.1:8080", "[::]:8080"]}),
]
