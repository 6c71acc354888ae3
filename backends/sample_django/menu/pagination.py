"""``?perpage=N&page=M`` pagination with DRF's ``count/next/previous/results`` envelope."""
from __future__ import annotations

from rest_framework.pagination import PageNumberPagination

__all__ = ["PerPagePagination"]


class PerPagePagination(PageNumberPagination):
    page_size = 10
    page_size_query_param = "perpage"
    # A bound on what one request can make the database and the wire carry.
    max_page_size = 100
