"""``X-Served-By`` on every response, naming the backend instance that answered.

Behind the gateway's load balancer two instances answer on one address; this
header is how a client (or a test) sees which one it got. The name is resolved
when Django builds its middleware chain, which gunicorn does inside each worker,
so the ``<hostname>:<pid>`` fallback names the worker, not the master.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

__all__ = ["SERVED_BY_HEADER", "ServedByMiddleware", "instance_name"]

SERVED_BY_HEADER = "X-Served-By"


def instance_name() -> str:
    """The configured ``INSTANCE_NAME``, else ``<hostname>:<pid>``."""
    return settings.INSTANCE_NAME or f"{socket.gethostname()}:{os.getpid()}"


class ServedByMiddleware:
    """Stamp each response with this process's instance name."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.instance = instance_name()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response[SERVED_BY_HEADER] = self.instance
        return response
