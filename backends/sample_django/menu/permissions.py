"""Who may change the menu: reads are public, writes belong to the Manager group."""
from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

__all__ = ["MANAGER_GROUP", "IsManagerOrReadOnly"]

MANAGER_GROUP = "Manager"


class IsManagerOrReadOnly(BasePermission):
    """Anyone may read; only Manager-group members (and superusers) may write.

    An anonymous writer is refused before the group test, so DRF answers 401
    with a ``WWW-Authenticate`` challenge; a signed-in non-manager gets 403.
    """

    message = "Only members of the Manager group may change the menu."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_superuser or user.groups.filter(name=MANAGER_GROUP).exists())
