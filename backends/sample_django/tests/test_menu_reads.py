"""Reading the menu: pagination, filtering, search and ordering, open to all."""
from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from menu.models import Category, MenuItem

pytestmark = pytest.mark.django_db


def titles(response_json: dict) -> list[str]:
    return [item["title"] for item in response_json["results"]]


def test_list_is_public_and_uses_the_drf_envelope(api_client: APIClient, menu: list[MenuItem]) -> None:
    response = api_client.get("/api/menu-items")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == len(menu)
    assert body["results"][0] == {
        "id": menu[0].id,
        "title": "Moussaka",
        "price": "17.00",
        "featured": False,
        "category": "mains",
    }


def test_default_page_size_is_ten(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items").json()

    assert len(body["results"]) == 10
    assert body["next"].endswith("/api/menu-items?page=2")


@pytest.mark.parametrize(
    ("perpage", "page", "expected_ids", "has_next", "has_previous"),
    [
        (5, 1, range(0, 5), True, False),
        (5, 2, range(5, 10), True, True),
        (5, 3, range(10, 12), False, True),
        (12, 1, range(0, 12), False, False),
    ],
)
def test_perpage_and_page_select_a_slice(
    api_client: APIClient,
    menu: list[MenuItem],
    perpage: int,
    page: int,
    expected_ids: range,
    has_next: bool,
    has_previous: bool,
) -> None:
    body = api_client.get("/api/menu-items", {"perpage": perpage, "page": page}).json()

    assert [item["id"] for item in body["results"]] == [menu[i].id for i in expected_ids]
    assert body["count"] == 12
    assert (body["next"] is not None) is has_next
    assert (body["previous"] is not None) is has_previous


def test_next_link_keeps_perpage(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"perpage": 5, "page": 1}).json()

    assert body["next"] == "http://testserver/api/menu-items?page=2&perpage=5"


def test_perpage_is_capped(api_client: APIClient, db: None) -> None:
    category = Category.objects.create(slug="bulk", title="Bulk")
    MenuItem.objects.bulk_create(
        MenuItem(title=f"Dish {n}", price=Decimal("1.00"), category=category) for n in range(105)
    )

    body = api_client.get("/api/menu-items", {"perpage": 1000}).json()

    assert body["count"] == 105
    assert len(body["results"]) == 100


def test_page_past_the_end_is_404(api_client: APIClient, menu: list[MenuItem]) -> None:
    assert api_client.get("/api/menu-items", {"perpage": 5, "page": 4}).status_code == 404


def test_category_filter_uses_the_slug(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"category": "drinks"}).json()

    assert body["count"] == 4
    assert {item["category"] for item in body["results"]} == {"drinks"}


def test_unknown_category_filters_to_nothing(api_client: APIClient, menu: list[MenuItem]) -> None:
    assert api_client.get("/api/menu-items", {"category": "nope"}).json()["count"] == 0


def test_featured_filter(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"featured": "true"}).json()

    assert titles(body) == ["Lamb Souvlaki", "Lemon Dessert", "Fresh Lemonade"]


def test_search_matches_title(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"search": "lemon"}).json()

    assert titles(body) == ["Lemon Dessert", "Lemon Tart", "Fresh Lemonade"]


def test_search_matches_category_title(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"search": "dessert"}).json()

    assert titles(body) == ["Lemon Dessert", "Baklava", "Lemon Tart", "Loukoumades"]


def test_filter_and_search_combine(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"search": "lemon", "category": "drinks"}).json()

    assert titles(body) == ["Fresh Lemonade"]


def test_ordering_by_price_breaks_ties_by_id(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"ordering": "price", "perpage": 12}).json()

    prices = [Decimal(item["price"]) for item in body["results"]]
    assert prices == sorted(prices)
    # Baklava and Lemon Tart cost the same; the older one comes first.
    assert titles(body)[2:4] == ["Baklava", "Lemon Tart"]


def test_ordering_by_descending_price(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"ordering": "-price", "perpage": 3}).json()

    assert titles(body) == ["Grilled Sea Bass", "Lamb Souvlaki", "Moussaka"]


def test_ordering_by_title(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"ordering": "title", "perpage": 3}).json()

    assert titles(body) == ["Baklava", "Falafel Bowl", "Fresh Lemonade"]


def test_ordering_by_an_unlisted_field_is_ignored(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/menu-items", {"ordering": "featured", "perpage": 3}).json()

    assert [item["id"] for item in body["results"]] == [item.id for item in menu[:3]]


def test_paging_through_price_order_sees_every_item_once(
    api_client: APIClient, menu: list[MenuItem]
) -> None:
    seen: list[int] = []
    for page in (1, 2, 3):
        body = api_client.get("/api/menu-items", {"ordering": "price", "perpage": 5, "page": page}).json()
        seen += [item["id"] for item in body["results"]]

    assert sorted(seen) == sorted(item.id for item in menu)


def test_detail_without_trailing_slash(api_client: APIClient, menu: list[MenuItem]) -> None:
    response = api_client.get(f"/api/menu-items/{menu[1].id}")

    assert response.status_code == 200
    assert response.json()["title"] == "Lamb Souvlaki"


def test_trailing_slash_is_not_a_second_spelling(api_client: APIClient, menu: list[MenuItem]) -> None:
    assert api_client.get("/api/menu-items/").status_code == 404


def test_categories_list(api_client: APIClient, menu: list[MenuItem]) -> None:
    body = api_client.get("/api/categories").json()

    assert body["count"] == 3
    assert [c["slug"] for c in body["results"]] == ["desserts", "drinks", "mains"]
