"""Who the client is: the TCP peer, or what a trusted proxy in front of us says.

The rule (SPEC §4): the peer, unless the peer is in ``server.trusted_proxies``; then
the rightmost address of ``server.client_ip_header`` (``X-Forwarded-For`` or RFC 7239
``Forwarded``) that is not itself trusted. Reading from the right matters: everything
left of the first untrusted hop was written by the client and proves nothing.

Only the one header the operator names is read (nginx's ``real_ip_header``): a proxy
that writes ``Forwarded`` usually passes the client's ``X-Forwarded-For`` through
untouched, so preferring whichever header is present would let the client choose. IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, what a dual-stack
socket reports for IPv4 peers) count as their IPv4 address everywhere.

The one address found here is used for the firewall, throttling, logs and the
``X-Forwarded-For`` sent upstream.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal, NamedTuple

from multidict import CIMultiDictProxy

__all__ = ["ClientIPHeader", "ClientIPResolver", "Resolution", "canonical_ip"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ClientIPHeader = Literal["X-Forwarded-For", "Forwarded"]


def canonical_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse an address, folding IPv4-mapped IPv6 to IPv4; ``None`` if it is not one."""
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443" as Forwarded writes it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"
        text = text.partition(":")[0]
    if "%" in text:  # zone index: fe80::1%eth0
        text = text.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Resolution(NamedTuple):
    client_ip: str
    forwarded_for: str
    """``X-Forwarded-For`` to send upstream: the client first, then each trusted hop
    it came through (the peer last). Entries left of the client were written by the
    client and are dropped."""
    trusted_peer: bool
    """The TCP peer is a trusted proxy, so its other forwarding headers are believed."""


class ClientIPResolver:
    """Compiled once from ``server.trusted_proxies`` and ``server.client_ip_header``."""

    __slots__ = ("_v4", "_v6", "_trusts_any", "_from_forwarded")

    def __init__(self, *, trusted_proxies: Sequence[IPNetwork], header: ClientIPHeader = "X-Forwarded-For") -> None:
        self._v4 = tuple(n for n in trusted_proxies if n.version == 4)
        self._v6 = tuple(n for n in trusted_proxies if n.version == 6)
        self._trusts_any = bool(trusted_proxies)
        self._from_forwarded = header == "Forwarded"

    @property
    def trusts_any(self) -> bool:
        return self._trusts_any

    def is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        networks = self._v4 if address.version == 4 else self._v6
        for network in networks:
            if address in network:
                return True
        return False

    def resolve(self, peer: str | None, headers: CIMultiDictProxy[str]) -> Resolution:
        if not self._trusts_any and peer:
            # The kernel reports peers in canonical text already; only the IPv4-mapped
            # form needs folding. No parsing on the common path.
            if peer.startswith("::ffff:") and "." in peer:
                peer = peer[7:]
            return Resolution(peer, peer, False)
        peer_address = canonical_ip(peer) if peer else None
        if peer_address is None:
            # A unix socket or something unparseable: it is still one caller.
            text = peer or "unknown"
            return Resolution(text, text, False)
        peer_text = str(peer_address)
        if not self._trusts_any or not self.is_trusted(peer_address):
            return Resolution(peer_text, peer_text, False)
        chain = [peer_text]
        for hop in reversed(self._forwarded_hops(headers)):
            address = canonical_ip(hop)
            if address is None:
                # Garbage where an address should be: the last trusted hop vouched for
                # something it cannot have seen, so stop believing the chain here.
                break
            chain.append(str(address))
            if not self.is_trusted(address):
                break
        chain.reverse()
        return Resolution(chain[0], ", ".join(chain), True)

    def _forwarded_hops(self, headers: CIMultiDictProxy[str]) -> list[str]:
        """The hops of the configured header, leftmost first; the other header is
        never read, so a client's copy of it can neither pick the address nor enter
        the chain sent upstream."""
        if not self._from_forwarded:
            return [part for value in headers.getall("X-Forwarded-For", ()) for part in (p.strip() for p in value.split(",")) if part]
        hops: list[str] = []
        for value in headers.getall("Forwarded", ()):
            for element in value.split(","):
                for pair in element.split(";"):
                    name, _, val = pair.partition("=")
                    if name.strip().lower() == "for":
                        hops.append(val.strip().strip('"'))
        return hops
