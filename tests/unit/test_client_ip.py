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
        # RFC 7239 Forwarded when there is no X-Forwarded-For
        (TRUSTED, "10.0.0.1", [("Forwarded", 'for=192.0.2.60;proto=http, for="[2001:db8::7]:4711"')], "2001:db8::7", "2001:db8::7, 10.0.0.1", True),
    ],
)
def test_resolution(resolver, peer, hdrs, client, xff, trusted):
    assert tuple(resolver.resolve(peer, headers(*hdrs))) == (client, xff, trusted)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:5678", "1.2.3.4"), ("[2001:db8::1]:443", "2001:db8::1"), ("fe80::1%eth0", "fe80::1"), ("::ffff:1.2.3.4", "1.2.3.4"), ("nope", None), ("", None)],
)
def test_canonical_ip(text, expected):
    result = canonical_ip(text)
    assert (str(result) if result else None) == expected
