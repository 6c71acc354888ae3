"""Upstreams: targets, the strategies that pick one, health, and the forwarder.

Each target owns a keep-alive connection pool (``max_connections`` bounded) for the
lifetime of the configuration that defines it (and across reloads that leave its
upstream unchanged).
"""

from gateway.upstream.balancer import Balancer, Target, make_balancer
from gateway.upstream.forwarder import Forwarder
from gateway.upstream.group import Upstream

__all__ = ["Balancer", "Target", "make_balancer", "Upstream", "Forwarder"]
