"""Reading and changing the menu through the gateway, as a client would."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

from .stack import Backends, Gateway, GatewayStarter


def test_pages_through_the_whole_menu_with_perpage(gateway: Gateway) -> None:
    first = gateway.client.get("/api/menu-items?perpage=5&page=1")
    assert first.status == 200, first
    total = first.json()["count"]
    assert total >= 30  # the seeded menu

    seen: list[int] = []
    page = first.json()
    pages = 1
    while True:
        assert len(page["results"]) <= 5
        seen += [item["id"] for item in page["results"]]
        if page["next"] is None:
            break
        # The gateway keeps the client's Host, so DRF's links point back at it.
        assert page["next"].startswith(f"{gateway.url}/api/menu-items?"), page["next"]
        reply = gateway.client.get(page["next"])
        assert reply.status == 200, reply
        page = reply.json()
        pages += 1

    assert len(seen) == len(set(seen)) == total
    assert pages == -(-total // 5)


def test_page_two_follows_page_one(gateway: Gateway) -> None:
    one = gateway.client.get("/api/menu-items?perpage=5&page=1").json()
    two = gateway.client.get("/api/menu-items?perpage=5&page=2").json()

    assert len(two["results"]) == 5
    assert two["previous"] is not None
    assert max(i["id"] for i in one["results"]) < min(i["id"] for i in two["results"])


def test_filter_search_and_order_pass_through(gateway: Gateway) -> None:
    desserts = gateway.client.get("/api/menu-items?category=desserts&ordering=-price&perpage=100").json()
    prices = [Decimal(item["price"]) for item in desserts["results"]]
    assert desserts["count"] >= 5
    assert {item["category"] for item in desserts["results"]} == {"desserts"}
    assert prices == sorted(prices, reverse=True)

    lemon = gateway.client.get("/api/menu-items?search=lemon&perpage=100").json()
    assert "Lemon Dessert" in {item["title"] for item in lemon["results"]}


def test_item_detail_and_backend_404_pass_through(gateway: Gateway) -> None:
    first_id = gateway.client.get("/api/menu-items?perpage=1").json()["results"][0]["id"]

    assert gateway.client.get(f"/api/menu-items/{first_id}").status == 200
    missing = gateway.client.get("/api/menu-items/99999999")
    assert missing.status == 404
    assert missing.headers.get("X-Served-By") in {"backend-1", "backend-2"}


def test_paths_without_a_route_never_reach_a_backend(gateway: Gateway) -> None:
    reply = gateway.client.get("/healthz")

    assert reply.status == 404
    assert reply.headers.get("X-Served-By") is None


def test_manager_creates_customer_is_403_anonymous_is_401(
    gateway: Gateway, tokens: Callable[[str], dict[str, str]]
) -> None:
    dish = {"title": f"E2E Lemon Sorbet {uuid.uuid4().hex[:8]}", "price": "4.50", "category": "desserts"}

    anonymous = gateway.client.post("/api/menu-items", dish)
    customer = gateway.client.post("/api/menu-items", dish, token=tokens("customer")["access"])
    manager = gateway.client.post("/api/menu-items", dish, token=tokens("manager")["access"])

    assert anonymous.status == 401, anonymous
    assert customer.status == 403, customer
    assert manager.status == 201, manager
    created = manager.json()
    assert {k: created[k] for k in dish} == dish
    # Written through one instance, visible through the gateway (either instance).
    for _ in range(2):
        assert gateway.client.get(f"/api/menu-items/{created['id']}").status == 200


def test_both_instances_answer(gateway: Gateway, backends: Backends) -> None:
    served_by = {gateway.client.get("/api/categories").headers.get("X-Served-By") for _ in range(8)}

    assert served_by == set(backends.names)


def test_a_gateway_with_one_target_uses_only_that_one(
    start_gateway: GatewayStarter, backends: Backends
) -> None:
    only_second = start_gateway(targets=[backends.urls[1]])

    served_by = {only_second.client.get("/api/categories").headers.get("X-Served-By") for _ in range(4)}

    assert served_by == {backends.names[1]}
