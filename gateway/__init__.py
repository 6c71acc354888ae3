"""An aiohttp API gateway: firewall, JWT, throttling, caching and load balancing in
front of existing HTTP APIs, configured from one YAML file."""

__version__ = "0.1.0"
