"""Upstreams: targets, the balancer that picks one, and the forwarder that talks to it.

Each target owns a keep-alive connection pool (``max_connections`` bounded) for the
lifetime of the configuration that defines it.
"""

from gateway.upstream.balancer import Balancer, RoundRobin, Target
from gateway.upstream.forwarder import Forwarder, Upstream

__all__ = ["Balancer", "RoundRobin", "Target", "Upstream", "Forwarder"]
