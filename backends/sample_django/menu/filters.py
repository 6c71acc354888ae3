"""Query-string filtering and ordering for the menu endpoints."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django_filters
from django.db.models import QuerySet
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from menu.models import MenuItem

__all__ = ["MenuItemFilter", "StableOrderingFilter"]


class MenuItemFilter(django_filters.FilterSet):
    """``?category=<slug>`` and ``?featured=true``."""

    category = django_filters.CharFilter(field_name="category__slug")

    class Meta:
        model = MenuItem
        fields = ["category", "featured"]


class StableOrderingFilter(OrderingFilter):
    """``?ordering=price`` with the primary key as the final tie-breaker.

    Many dishes share a price; without a total order the database may return
    ties in any order and a client paging through ``?ordering=price`` could see
    an item twice or never.
    """

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Sequence[str]:
        ordering = list(super().get_ordering(request, queryset, view) or [])
        if not {"pk", "-pk", "id", "-id"} & set(ordering):
            ordering.append("pk")
        return ordering
