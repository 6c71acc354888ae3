"""URL map: the menu API under ``/api/``, djoser + simplejwt under ``/auth/``."""
from __future__ import annotations

from django.urls import include, path

from littlelemon.health import healthz

urlpatterns = [
    path("api/", include("menu.urls")),
    path("auth/", include("djoser.urls")),
    path("auth/", include("djoser.urls.jwt")),
    path("healthz", healthz, name="healthz"),
]
