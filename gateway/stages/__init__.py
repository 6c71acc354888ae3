"""The registry of per-route stages, in the order every request meets them.

The full pipeline (SPEC §1) is::

    accept -> normalise path -> route -> client IP        (the edge handler)
           -> firewall -> cors -> authenticate -> throttle -> authorize -> cache
                                                          (per-route stages, here)
           -> balance + forward                           (the route's forwarder)

Each capability adds its factory here, at its place in the order; a route's chain is
built from this dict, never from an if-chain.
"""

from __future__ import annotations

from gateway.pipeline import StageFactory
from gateway.stages import auth, authorize, cache, cors, firewall, throttle

__all__ = ["STAGES"]

STAGES: dict[str, StageFactory] = {
    # The firewall first (SPEC §1): a denied address gets a 403 and nothing else --
    # no CORS preflight answer, no CORS headers, no token verification.
    "firewall": firewall.build,
    # Then CORS: a preflight is answered before auth and throttling (it never carries
    # credentials), and its headers must be on every later refusal too.
    "cors": cors.build,
    # authenticate only records a missing or invalid token; throttle then counts the
    # request (by subject when verified, else by client IP) and only authorize
    # raises the 401/403: a failed token still costs its IP's anonymous bucket.
    "authenticate": auth.build,
    "throttle": throttle.build,
    "authorize": authorize.build,
    # Last: a hit must have passed every check above (a cache is never a way around
    # the firewall, auth or throttling); it drives the forwarder's fetch and render.
    "cache": cache.build,
}
