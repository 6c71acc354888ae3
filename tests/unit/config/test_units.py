import ipaddress

import pytest

from gateway.config.units import (
    Rate,
    UnitError,
    parse_cidr,
    parse_duration,
    parse_host_port,
    parse_rate,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1.5s", 1.5), (2, 2.0), ("10", 10.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "5 minutes", "-1s", "1w", "", "s", True, None, [1]])
def test_bad_durations(text):
    with pytest.raises(UnitError, match="expected"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512KiB", 524288), ("10MiB", 10485760), ("1GiB", 1 << 30), ("100", 100), (2048, 2048), ("1KB", 1000), ("3B", 3)],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "1.5MiB", "-1", "10 PiB", True, 1.5])
def test_bad_sizes(text):
    with pytest.raises(UnitError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("60/minute", Rate(60, 60)),
        ("60/m", Rate(60, 60)),
        ("5/second", Rate(5, 1)),
        ("5/s", Rate(5, 1)),
        ("100/hour", Rate(100, 3600)),
        ("1000/d", Rate(1000, 86400)),
        (" 10 / minute ", Rate(10, 60)),
    ],
)
def test_rates(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0/minute", "-5/minute", "5/fortnight", "five/minute", "60", 60, "60/"])
def test_bad_rates(text):
    with pytest.raises(UnitError, match="rate"):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("203.0.113.7", "203.0.113.7/32"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("::ffff:1.2.3.4", "1.2.3.4/32"),
    ],
)
def test_cidrs(text, network):
    assert parse_cidr(text) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1/8", "host bits"),
        ("010.0.0.0/8", "expected a CIDR"),
        ("10.0.0.0/33", "expected a CIDR"),
        ("2001:db8::1/32", "host bits"),
        ("example.com", "expected a CIDR"),
        (42, "expected a CIDR"),
    ],
)
def test_bad_cidrs(text, message):
    with pytest.raises(UnitError, match=message):
        parse_cidr(text)


@pytest.mark.parametrize(
    ("text", "pair"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::]:8080", ("::", 8080)), ("localhost:0", ("localhost", 0))],
)
def test_host_ports(text, pair):
    assert parse_host_port(text) == pair


@pytest.mark.parametrize("text", ["8080", "127.0.0.1", ":::8080", "[::1]8080", "[zz]:80", "h:99999", "h:x"])
def test_bad_host_ports(text):
    with pytest.raises(UnitError):
        parse_host_port(text)
