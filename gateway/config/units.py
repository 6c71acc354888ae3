"""Parsers for the value grammars of the YAML file: durations, sizes, rates, CIDRs,
host:port pairs.

They are plain functions raising :class:`UnitError` so they can be unit-tested
without pydantic, and wrapped once into annotated pydantic types in ``types.py``.
Every message says what was expected and what was given, because it ends up
verbatim in ``gateway check`` output next to the YAML path.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

__all__ = [
    "UnitError",
    "Rate",
    "parse_duration",
    "parse_size",
    "parse_rate",
    "parse_cidr",
    "parse_host_port",
]


class UnitError(ValueError):
    """A value does not follow its grammar; the message is meant for operators."""


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    # Decimal units are accepted because operators write them; they mean what they say.
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
_RATE_PERIODS = {
    "s": 1,
    "second": 1,
    "m": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_duration(value: object) -> float:
    """``250ms``, ``30s``, ``5m``, ``1h``, ``1d`` -> seconds. A bare number means seconds."""
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            match = _DURATION_RE.match(value)
            if not match:
                raise UnitError(f"expected a duration like 30s, got {value!r}")
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise UnitError(f"expected a duration like 30s, got {value!r}")
    if seconds < 0:
        raise UnitError(f"expected a non-negative duration, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """``512KiB``, ``10MiB``, ``1GiB`` (or a bare number of bytes) -> bytes."""
    if _is_number(value) and float(value) == int(value):  # type: ignore[arg-type]
        size = int(value)  # type: ignore[arg-type]
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise UnitError(f"expected a size like 10MiB, got {value!r}")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    else:
        raise UnitError(f"expected a size like 10MiB, got {value!r}")
    if size < 0:
        raise UnitError(f"expected a non-negative size, got {value!r}")
    return size


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` events per ``period`` seconds."""

    count: int
    period: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def __str__(self) -> str:
        names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
        return f"{self.count}/{names.get(self.period, f'{self.period}s')}"


def parse_rate(value: object) -> Rate:
    """``60/minute`` (also ``60/m``, ``5/second``, ``5/s``, ``/hour``, ``/day``) -> Rate.

    Zero and negative rates are refused: "never" is expressed by a firewall rule,
    not by a bucket that never refills.
    """
    if isinstance(value, Rate):
        return value
    if not isinstance(value, str):
        raise UnitError(f"expected a rate like 60/minute, got {value!r}")
    match = _RATE_RE.match(value)
    if not match or match.group(2) not in _RATE_PERIODS:
        if value.strip().startswith("-"):
            raise UnitError(f"expected a positive rate like 60/minute, got {value!r}")
        raise UnitError(f"expected a rate like 60/minute, got {value!r}")
    count = int(match.group(1))
    if count <= 0:
        raise UnitError(f"expected a positive rate like 60/minute, got {value!r}")
    return Rate(count=count, period=_RATE_PERIODS[match.group(2)])


def parse_cidr(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network in CIDR form, strictly: host bits set or leading zeros are errors.

    A bare address is a /32 (or /128). IPv4-mapped IPv6 networks are folded to
    their IPv4 equivalent so that every rule compares like with like.
    """
    if not isinstance(value, str):
        raise UnitError(f"expected a CIDR like 10.0.0.0/8, got {value!r}")
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        reason = str(exc)
        if "has host bits set" in reason:
            raise UnitError(
                f"expected a CIDR without host bits, got {value!r} "
                f"(did you mean {ipaddress.ip_network(text, strict=False)}?)"
            ) from None
        raise UnitError(f"expected a CIDR like 10.0.0.0/8, got {value!r}") from None
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_host_port(value: object) -> tuple[str, int]:
    """``127.0.0.1:8080``, ``[::]:8080``, ``localhost:80`` -> (host, port)."""
    if not isinstance(value, str):
        raise UnitError(f"expected an address like 127.0.0.1:8080, got {value!r}")
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise UnitError(f"expected an address like [::1]:8080, got {value!r}")
        host, port_text = text[1:end], text[end + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UnitError(f"expected an IPv6 address in brackets, got {value!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise UnitError(f"expected an address like 127.0.0.1:8080, got {value!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UnitError(f"expected a port between 0 and 65535, got {value!r}")
    return host, int(port_text)
