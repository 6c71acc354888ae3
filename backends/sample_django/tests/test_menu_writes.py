"""Changing the menu: Manager group only (401 anonymous, 403 everyone else)."""
from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from menu.models import Category, MenuItem

pytestmark = pytest.mark.django_db

NEW_ITEM = {"title": "Lemon Sorbet", "price": "4.50", "category": "desserts", "featured": True}


def test_manager_creates_an_item(
    client_as: Callable[[User], APIClient], manager: User, menu: list[MenuItem]
) -> None:
    response = client_as(manager).post("/api/menu-items", NEW_ITEM, format="json")

    assert response.status_code == 201, response.content
    assert response.json() == {"id": response.json()["id"], **NEW_ITEM}
    assert MenuItem.objects.get(title="Lemon Sorbet").category.slug == "desserts"


def test_customer_may_not_create(
    client_as: Callable[[User], APIClient], customer: User, menu: list[MenuItem]
) -> None:
    response = client_as(customer).post("/api/menu-items", NEW_ITEM, format="json")

    assert response.status_code == 403
    assert not MenuItem.objects.filter(title="Lemon Sorbet").exists()


def test_anonymous_may_not_create(api_client: APIClient, menu: list[MenuItem]) -> None:
    response = api_client.post("/api/menu-items", NEW_ITEM, format="json")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_invalid_token_is_401_even_for_reads(api_client: APIClient, menu: list[MenuItem]) -> None:
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-jwt")

    assert api_client.get("/api/menu-items").status_code == 401


def test_superuser_may_write(client_as: Callable[[User], APIClient], menu: list[MenuItem]) -> None:
    admin = User.objects.create_superuser("boss", password="correct-horse-battery-9")

    response = client_as(admin).post("/api/menu-items", NEW_ITEM, format="json")

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("put", {"title": "Moussaka", "price": "18.00", "category": "mains", "featured": True}),
        ("patch", {"price": "18.00"}),
        ("delete", None),
    ],
)
def test_update_and_delete_follow_the_same_rule(
    client_as: Callable[[User], APIClient],
    api_client: APIClient,
    manager: User,
    customer: User,
    menu: list[MenuItem],
    method: str,
    payload: dict | None,
) -> None:
    url = f"/api/menu-items/{menu[0].id}"

    assert getattr(api_client, method)(url, payload, format="json").status_code == 401
    assert getattr(client_as(customer), method)(url, payload, format="json").status_code == 403
    response = getattr(client_as(manager), method)(url, payload, format="json")
    assert response.status_code == (204 if method == "delete" else 200), response.content


def test_duplicate_title_is_rejected(
    client_as: Callable[[User], APIClient], manager: User, menu: list[MenuItem]
) -> None:
    payload = {**NEW_ITEM, "title": "Moussaka"}

    response = client_as(manager).post("/api/menu-items", payload, format="json")

    assert response.status_code == 400
    assert "title" in response.json()


@pytest.mark.parametrize(
    ("field", "value"),
    [("price", "-1.00"), ("price", "lots"), ("category", "no-such-category")],
)
def test_invalid_fields_are_400(
    client_as: Callable[[User], APIClient], manager: User, menu: list[MenuItem], field: str, value: str
) -> None:
    response = client_as(manager).post("/api/menu-items", {**NEW_ITEM, field: value}, format="json")

    assert response.status_code == 400
    assert field in response.json()


def test_manager_manages_categories(
    client_as: Callable[[User], APIClient], manager: User, customer: User, db: None
) -> None:
    category = {"slug": "brunch", "title": "Brunch"}

    assert client_as(customer).post("/api/categories", category, format="json").status_code == 403
    response = client_as(manager).post("/api/categories", category, format="json")
    assert response.status_code == 201
    assert Category.objects.filter(slug="brunch").exists()


def test_deleting_a_category_in_use_is_409(
    client_as: Callable[[User], APIClient], manager: User, menu: list[MenuItem]
) -> None:
    response = client_as(manager).delete(f"/api/categories/{menu[0].category_id}")

    assert response.status_code == 409
    assert Category.objects.filter(pk=menu[0].category_id).exists()
