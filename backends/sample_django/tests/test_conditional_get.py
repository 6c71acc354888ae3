"""ETags and 304s on the read endpoints: what the gateway's cache revalidates with.

ConditionalGetMiddleware hashes the GET response body into an ``ETag`` and
answers a matching ``If-None-Match`` with 304 and no body. The backend sets no
``Cache-Control`` on the API: how long a response stays fresh is the gateway
route's ``ttl``; the ETag only makes the revalidation after it cheap to send.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django import Settings
from rest_framework.test import APIClient

from menu.models import MenuItem

pytestmark = pytest.mark.django_db

READ_PATHS = ["/api/menu-items", "/api/menu-items?perpage=5&page=2", "/api/categories"]


def detail_paths(menu: list[MenuItem]) -> list[str]:
    return [f"/api/menu-items/{menu[0].id}", f"/api/categories/{menu[0].category_id}"]


def test_reads_carry_an_etag(api_client: APIClient, menu: list[MenuItem]) -> None:
    for path in READ_PATHS + detail_paths(menu):
        response = api_client.get(path)

        assert response.status_code == 200, path
        assert response["ETag"].startswith('"') and response["ETag"].endswith('"'), path


def test_matching_if_none_match_is_304_without_a_body(
    settings: Settings, menu: list[MenuItem]
) -> None:
    settings.INSTANCE_NAME = "backend-7"
    client = Client()
    for path in READ_PATHS + detail_paths(menu):
        etag = client.get(path)["ETag"]

        response = client.get(path, HTTP_IF_NONE_MATCH=etag)

        assert response.status_code == 304, path
        assert response.content == b""
        assert response["ETag"] == etag
        # The revalidation is visible: the instance that answered it names itself.
        assert response["X-Served-By"] == "backend-7"


@pytest.mark.parametrize(
    "if_none_match",
    ['W/{etag}', '"stale-one", {etag}', "*"],
    ids=["weak", "one-of-a-list", "star"],
)
def test_if_none_match_uses_weak_comparison(
    api_client: APIClient, menu: list[MenuItem], if_none_match: str
) -> None:
    etag = api_client.get("/api/menu-items")["ETag"]

    response = api_client.get("/api/menu-items", HTTP_IF_NONE_MATCH=if_none_match.format(etag=etag))

    assert response.status_code == 304


def test_a_different_etag_gets_the_full_response(api_client: APIClient, menu: list[MenuItem]) -> None:
    response = api_client.get("/api/menu-items", HTTP_IF_NONE_MATCH='"not-the-current-one"')

    assert response.status_code == 200
    assert response.json()["count"] == len(menu)


def test_a_managers_write_invalidates_the_old_etag(
    api_client: APIClient, client_as: Callable[[User], APIClient], manager: User, menu: list[MenuItem]
) -> None:
    old_list = api_client.get("/api/menu-items")["ETag"]
    old_item = api_client.get(f"/api/menu-items/{menu[0].id}")["ETag"]

    created = client_as(manager).post(
        "/api/menu-items", {"title": "Lemon Sorbet", "price": "4.50", "category": "desserts"}, format="json"
    )
    patched = client_as(manager).patch(f"/api/menu-items/{menu[0].id}", {"price": "17.50"}, format="json")
    assert (created.status_code, patched.status_code) == (201, 200)

    list_after = api_client.get("/api/menu-items", HTTP_IF_NONE_MATCH=old_list)
    item_after = api_client.get(f"/api/menu-items/{menu[0].id}", HTTP_IF_NONE_MATCH=old_item)
    assert list_after.status_code == 200
    assert list_after.json()["count"] == len(menu) + 1
    assert list_after["ETag"] not in {"", old_list}
    assert item_after.status_code == 200
    assert item_after.json()["price"] == "17.50"
    assert item_after["ETag"] not in {"", old_item}


def test_both_instances_give_the_same_etag(settings: Settings, menu: list[MenuItem]) -> None:
    """The gateway may revalidate on the other instance: the ETag hashes the body only."""
    settings.INSTANCE_NAME = "backend-1"
    first = Client().get("/api/menu-items")
    settings.INSTANCE_NAME = "backend-2"
    second = Client().get("/api/menu-items", HTTP_IF_NONE_MATCH=first["ETag"])

    assert first["X-Served-By"] == "backend-1"
    assert (second.status_code, second["X-Served-By"]) == (304, "backend-2")


def test_the_etag_is_the_same_for_signed_in_readers(
    api_client: APIClient, client_as: Callable[[User], APIClient], customer: User, menu: list[MenuItem]
) -> None:
    assert client_as(customer).get("/api/menu-items")["ETag"] == api_client.get("/api/menu-items")["ETag"]


def test_api_reads_leave_freshness_to_the_gateway(api_client: APIClient, menu: list[MenuItem]) -> None:
    response = api_client.get("/api/menu-items")

    assert "Cache-Control" not in response
    assert "Expires" not in response
    assert "Last-Modified" not in response


def test_writes_carry_no_etag(
    client_as: Callable[[User], APIClient], manager: User, menu: list[MenuItem]
) -> None:
    response = client_as(manager).post(
        "/api/menu-items", {"title": "Lemon Sorbet", "price": "4.50", "category": "desserts"}, format="json"
    )

    assert response.status_code == 201
    assert "ETag" not in response


def test_healthz_is_never_revalidated(client: Client) -> None:
    """``no-store`` keeps /healthz out of caches: no ETag, so never a 304."""
    response = client.get("/healthz", HTTP_IF_NONE_MATCH="*")

    assert response.status_code == 200
    assert "ETag" not in response
