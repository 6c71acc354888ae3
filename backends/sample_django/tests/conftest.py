"""Fixtures for the backend's tests: real Django, real (test) SQLite, real JWTs.

Users and menu rows are made through the ORM; tokens are obtained through the
real ``/auth/jwt/create/`` endpoint so every test exercises the same signing
path a client does.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from pytest_django import Settings
from rest_framework.test import APIClient

from menu.models import Category, MenuItem
from menu.permissions import MANAGER_GROUP

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Settings) -> None:
    """PBKDF2's deliberate slowness is for attackers, not for test suites."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_throttle_counts() -> None:
    """The throttles count in this process's LocMemCache; each test starts from zero."""
    cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def manager(db: None) -> User:
    user = User.objects.create_user("test-manager", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=MANAGER_GROUP)[0])
    return user


@pytest.fixture
def customer(db: None) -> User:
    return User.objects.create_user("test-customer", password=PASSWORD)


@pytest.fixture
def obtain_tokens(api_client: APIClient) -> Callable[..., dict[str, str]]:
    """POST /auth/jwt/create/ and return ``{"access": ..., "refresh": ...}``."""

    def obtain(username: str, password: str = PASSWORD) -> dict[str, str]:
        response = api_client.post(
            "/auth/jwt/create/", {"username": username, "password": password}, format="json"
        )
        assert response.status_code == 200, response.content
        return response.json()

    return obtain


@pytest.fixture
def client_as(obtain_tokens: Callable[..., dict[str, str]]) -> Callable[[User], APIClient]:
    """An API client that sends ``Authorization: Bearer <access>`` for ``user``."""

    def make(user: User) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {obtain_tokens(user.username)['access']}")
        return client

    return make


@pytest.fixture
def public_key_pem() -> str:
    return Path(settings.JWT_PUBLIC_KEY_FILE).read_text()


@pytest.fixture
def menu(db: None) -> list[MenuItem]:
    """Twelve items in three categories, with deliberate price ties."""
    mains = Category.objects.create(slug="mains", title="Mains")
    desserts = Category.objects.create(slug="desserts", title="Desserts")
    drinks = Category.objects.create(slug="drinks", title="Drinks")
    rows = [
        ("Moussaka", "17.00", mains, False),
        ("Lamb Souvlaki", "18.50", mains, True),
        ("Grilled Sea Bass", "24.00", mains, False),
        ("Falafel Bowl", "13.25", mains, False),
        ("Lemon Dessert", "6.99", desserts, True),
        ("Baklava", "5.50", desserts, False),
        ("Lemon Tart", "5.50", desserts, False),
        ("Loukoumades", "5.75", desserts, False),
        ("Fresh Lemonade", "3.50", drinks, True),
        ("Mint Iced Tea", "3.25", drinks, False),
        ("House Red Wine", "8.00", drinks, False),
        ("House White Wine", "8.00", drinks, False),
    ]
    return [
        MenuItem.objects.create(title=title, price=Decimal(price), category=category, featured=featured)
        for title, price, category, featured in rows
    ]
