"""The backend's own throttles: a per-process backstop behind the gateway's limits.

Reads (``list``, ``retrieve``, and anything else that is not a write) count
against the ``anon`` rate, per client IP, for anonymous callers only; writes
(``create``, ``update``, ``partial_update``, ``destroy``) count against the
``user`` rate, per user. Permissions run first, so a refused write (401/403)
never spends anyone's budget. Counts live in the process's LocMemCache.

DRF copies ``DEFAULT_THROTTLE_RATES`` into a class attribute when it is first
imported; these subclasses read the setting when a request is throttled, so a
changed setting (``override_settings`` in a test) takes effect.
"""
from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, UserRateThrottle

__all__ = ["WRITE_ACTIONS", "ActionThrottlesMixin", "ReadThrottle", "WriteThrottle"]

WRITE_ACTIONS = frozenset({"create", "update", "partial_update", "destroy"})


class _RateFromSettings:
    scope: str

    def get_rate(self) -> str | None:
        try:
            return api_settings.DEFAULT_THROTTLE_RATES[self.scope]
        except KeyError:
            raise ImproperlyConfigured(f"No default throttle rate set for '{self.scope}' scope") from None


class ReadThrottle(_RateFromSettings, AnonRateThrottle):
    """``anon`` scope: anonymous callers per client IP; signed-in readers pass."""


class WriteThrottle(_RateFromSettings, UserRateThrottle):
    """``user`` scope: per user id (per client IP for the anonymous, who are refused first)."""


class ActionThrottlesMixin:
    """``get_throttles`` for a viewset: the write throttle for writes, else the read one."""

    action: str | None

    def get_throttles(self) -> Sequence[BaseThrottle]:
        if self.action in WRITE_ACTIONS:
            return [WriteThrottle()]
        return [ReadThrottle()]
