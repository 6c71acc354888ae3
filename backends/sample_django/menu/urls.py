"""Routes without a trailing slash: ``/api/menu-items`` and ``/api/menu-items/3``.

The gateway matches on path segments, so the API keeps one spelling per
resource; ``/api/menu-items/`` is a 404, not a redirect.
"""
from __future__ import annotations

from rest_framework.routers import DefaultRouter

from menu.views import CategoryViewSet, MenuItemViewSet

router = DefaultRouter(trailing_slash=False)
router.register("menu-items", MenuItemViewSet, basename="menuitem")
router.register("categories", CategoryViewSet, basename="category")

urlpatterns = router.urls
