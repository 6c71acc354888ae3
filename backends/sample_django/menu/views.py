"""The menu endpoints: ``/api/menu-items`` and ``/api/categories``."""
from __future__ import annotations

from django.db.models import ProtectedError, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status, viewsets
from rest_framework.exceptions import APIException
from rest_framework.filters import SearchFilter

from menu.filters import MenuItemFilter, StableOrderingFilter
from menu.models import Category, MenuItem
from menu.permissions import IsManagerOrReadOnly
from menu.serializers import CategorySerializer, MenuItemSerializer
from menu.throttling import ActionThrottlesMixin

__all__ = ["CategoryInUse", "CategoryViewSet", "MenuItemViewSet"]


class CategoryInUse(APIException):
    """Deleting a category that still holds items would orphan them: 409, not 500."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This category still has menu items; move or delete them first."
    default_code = "category_in_use"


class MenuItemViewSet(ActionThrottlesMixin, viewsets.ModelViewSet):
    """List, filter, search, order and (for managers) edit menu items."""

    serializer_class = MenuItemSerializer
    permission_classes = [IsManagerOrReadOnly]
    filter_backends = [DjangoFilterBackend, SearchFilter, StableOrderingFilter]
    filterset_class = MenuItemFilter
    search_fields = ["title", "category__title"]
    ordering_fields = ["price", "title"]
    ordering = ["id"]

    def get_queryset(self) -> QuerySet[MenuItem]:
        # select_related: the serializer reads category.slug for every row.
        return MenuItem.objects.select_related("category")


class CategoryViewSet(ActionThrottlesMixin, viewsets.ModelViewSet):
    """The menu's sections; managers may add or rename them."""

    queryset = Category.objects.all()
    serializer_class = CategorySerializer
    permission_classes = [IsManagerOrReadOnly]
    filter_backends = [SearchFilter, StableOrderingFilter]
    search_fields = ["title", "slug"]
    ordering_fields = ["title"]
    ordering = ["title"]

    def perform_destroy(self, instance: Category) -> None:
        try:
            instance.delete()
        except ProtectedError as exc:
            raise CategoryInUse from exc
