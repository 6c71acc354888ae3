"""Upstreams: targets, the balancer that picks one, and the forwarder that talks to it.

Each upstream owns one aiohttp ``ClientSession`` (one keep-alive pool, bounded per
target) for the lifetime of the configuration that defines it.
"""

from gateway.upstream.balancer import Balancer, RoundRobin, Target
from gateway.upstream.forwarder import Upstream

__all__ = ["Balancer", "RoundRobin", "Target", "Upstream"]
