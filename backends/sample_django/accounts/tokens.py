"""Access tokens that carry the caller's groups, so the gateway can authorise.

simplejwt's default claims (``user_id``, ``token_type``, ``exp``, ``iat``,
``jti``) are kept as they are; this adds ``groups``: the sorted names of the
user's Django groups. The gateway's ``require_claims: {groups: Manager}`` reads
it without calling the backend.

Groups are looked up whenever an *access* token is minted -- at login and at
every refresh -- rather than copied from the refresh token, so a user moved
out of ``Manager`` loses the claim at the next refresh, not a day later.
"""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ObjectDoesNotExist
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import (
    TokenObtainPairSerializer,
    TokenRefreshSerializer,
)
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

__all__ = [
    "GROUPS_CLAIM",
    "GroupsRefreshToken",
    "GroupsTokenObtainPairSerializer",
    "GroupsTokenRefreshSerializer",
    "group_names",
]

GROUPS_CLAIM = "groups"


def group_names(user_id: Any) -> list[str]:
    """Sorted group names of the user whose ``USER_ID_FIELD`` is ``user_id`` (one query)."""
    lookup = {f"user__{api_settings.USER_ID_FIELD}": user_id}
    return sorted(Group.objects.filter(**lookup).values_list("name", flat=True))


class GroupsRefreshToken(RefreshToken):
    """A refresh token whose access tokens say which groups the user is in."""

    @property
    def access_token(self) -> AccessToken:
        access = super().access_token
        access[GROUPS_CLAIM] = group_names(self.payload[api_settings.USER_ID_CLAIM])
        return access


class GroupsTokenObtainPairSerializer(TokenObtainPairSerializer):
    """``POST /auth/jwt/create/``: username + password -> refresh + access."""

    token_class = GroupsRefreshToken


class GroupsTokenRefreshSerializer(TokenRefreshSerializer):
    """``POST /auth/jwt/refresh/``: refresh -> a new access token with current groups."""

    token_class = GroupsRefreshToken

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        try:
            return super().validate(attrs)
        except ObjectDoesNotExist as exc:
            # simplejwt looks the user up with .get(); a deleted user would be a 500.
            raise AuthenticationFailed(
                self.error_messages["no_active_account"], "no_active_account"
            ) from exc
