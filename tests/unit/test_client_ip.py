import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.client_ip import ClientIPResolver, canonical_ip
from gateway.config.units import parse_cidr


def headers(*pairs):
    return CIMultiDictProxy(CIMultiDict(pairs))


TRUSTED = ClientIPResolver(trusted_proxies=[parse_cidr("10.0.0.0/8"), parse_cidr("fd00::/8")])
NONE = ClientIPResolver(trusted_proxies=[])


@pytest.mark.parametrize(
    ("resolver", "peer", "hdrs", "client", "xff", "trusted"),
    [
        # untrusted peer: its forwarding headers mean nothing
        (NONE, "203.0.113.9", [("X-Forwarded-For", "1.1.1.1")], "203.0.113.9", "203.0.113.9", False),
        (TRUSTED, "203.0.113.9", [("X-Forwarded-For", "1.1.1.1")], "203.0.113.9", "203.0.113.9", False),
        # IPv4-mapped peers are their IPv4 address
        (NONE, "::ffff:203.0.113.9", [], "203.0.113.9", "203.0.113.9", False),
        (TRUSTED, "::ffff:10.0.0.1", [("X-Forwarded-For", "1.2.3.4")], "1.2.3.4", "1.2.3.4, 10.0.0.1", True),
        # trusted peer: rightmost untrusted entry; spoofed entries to its left are dropped
        (TRUSTED, "10.0.0.1", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4")], "1.2.3.4", "1.2.3.4, 10.0.0.1", True),
        (TRUSTED, "10.0.0.1", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.9.9.9")], "1.2.3.4", "1.2.3.4, 10.9.9.9, 10.0.0.1", True),
        # several X-Forwarded-For headers are one list, in order
        (TRUSTED, "10.0.0.1", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")], "1.2.3.4", "1.2.3.4, 10.0.0.1", True),
        # trusted peer without forwarding headers is itself the client
        (TRUSTED, "10.0.0.1", [], "10.0.0.1", "10.0.0.1", True),
        # a chain made only of trusted hops: the leftmost
        (TRUSTED, "10.0.0.1", [("X-Forwarded-For", "10.0.0.7")], "10.0.0.7", "10.0.0.7, 10.0.0.1", True),
        # garbage stops the walk at the last trusted hop
        (TRUSTED, "10.0.0.1", [("X-Forwarded-For", "1.2.3.4, not-an-ip")], "10.0.0.1", "10.0.0.1", True),
        # mapped addresses inside the header fold too
        (TRUSTED, "10.0.0.1", [("X-Forwarded-For", "::ffff:1.2.3.4")], "1.2.3.4", "1.2.3.4, 10.0.0.1", True),
        # IPv6
        (TRUSTED, "fd00::1", [("X-Forwarded-For", "2001:db8::5")], "2001:db8::5", "2001:db8::5, fd00::1", True),
        # the default header is X-Forwarded-For; Forwarded is not read at all
        (TRUSTED, "10.0.0.1", [("Forwarded", "for=192.0.2.60")], "10.0.0.1", "10.0.0.1", True),
    ],
)
def test_resolution(resolver, peer, hdrs, client, xff, trusted):
    assert tuple(resolver.resolve(peer, headers(*hdrs))) == (client, xff, trusted)


FORWARDED = ClientIPResolver(trusted_proxies=[parse_cidr("10.0.0.0/8")], header="Forwarded")


@pytest.mark.parametrize(
    ("peer", "hdrs", "client", "xff"),
    [
        # RFC 7239 elements, quoted IPv6 with a port
        ("10.0.0.1", [("Forwarded", 'for=192.0.2.60;proto=http, for="[2001:db8::7]:4711"')], "2001:db8::7", "2001:db8::7, 10.0.0.1"),
        # a proxy that writes only Forwarded and passes the client's XFF through: the
        # client's XFF must not choose the address, nor enter the chain sent upstream
        ("10.0.0.1", [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=192.0.2.60")], "192.0.2.60", "192.0.2.60, 10.0.0.1"),
        ("10.0.0.1", [("X-Forwarded-For", "6.6.6.6")], "10.0.0.1", "10.0.0.1"),
        # case-insensitive parameter names, several headers, trusted hops in between
        ("10.0.0.1", [("Forwarded", "For=6.6.6.6"), ("Forwarded", "for=192.0.2.60;by=x, FOR=10.1.1.1")], "192.0.2.60", "192.0.2.60, 10.1.1.1, 10.0.0.1"),
        # obfuscated or unknown identifiers stop the walk at the last trusted hop
        ("10.0.0.1", [("Forwarded", "for=unknown")], "10.0.0.1", "10.0.0.1"),
        ("10.0.0.1", [("Forwarded", 'for="_hidden"')], "10.0.0.1", "10.0.0.1"),
        # an untrusted peer's Forwarded means nothing
        ("203.0.113.9", [("Forwarded", "for=192.0.2.60")], "203.0.113.9", "203.0.113.9"),
    ],
)
def test_resolution_from_forwarded(peer, hdrs, client, xff):
    resolution = FORWARDED.resolve(peer, headers(*hdrs))
    assert (resolution.client_ip, resolution.forwarded_for) == (client, xff)


def test_behind_an_xff_proxy_a_client_forwarded_header_is_ignored():
    hdrs = headers(("Forwarded", "for=6.6.6.6"), ("X-Forwarded-For", "192.0.2.60"))
    assert TRUSTED.resolve("10.0.0.1", hdrs).client_ip == "192.0.2.60"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:5678", "1.2.3.4"), ("[2001:db8::1]:443", "2001:db8::1"), ("fe80::1%eth0", "fe80::1"), ("::ffff:1.2.3.4", "1.2.3.4"), ("nope", None), ("", None)],
)
def test_canonical_ip(text, expected):
    result = canonical_ip(text)
    assert (str(result) if result else None) == expected
