from __future__ import annotations

from django.apps import AppConfig


class MenuConfig(AppConfig):
    name = "menu"
    verbose_name = "Little Lemon menu"
