"""``/healthz``: is this instance able to serve, database included?

The gateway's active health check calls it every few seconds, so it stays
cheap: one trivial query on the default connection. A database that cannot be
opened or queried makes the instance unhealthy (503), which is what lets the
gateway route around an instance whose database is gone.
"""
from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

__all__ = ["healthz"]

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ok"}`` after ``SELECT 1`` succeeds, else 503."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("health check failed: database unavailable: %s", exc)
        return JsonResponse({"status": "unavailable", "reason": "database"}, status=503)
    return JsonResponse({"status": "ok"})
