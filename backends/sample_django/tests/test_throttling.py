"""DRF throttles: the backend's own, per-process backstop behind the gateway's limits.

Anonymous reads count against the ``anon`` rate per client IP (the last
``X-Forwarded-For`` entry: ``NUM_PROXIES`` is 1, the gateway); writes count
against the ``user`` rate per user. The rates here are set low per test; the
shipped defaults are checked against config/gateway.yaml, whose limits must
always bite first.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from pytest_django import Settings
from rest_framework.test import APIClient
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from menu.models import MenuItem
from menu.permissions import MANAGER_GROUP
from menu.views import CategoryViewSet, MenuItemViewSet
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

BACKEND_DIR = Path(__file__).resolve().parent.parent
GATEWAY_CONFIG = BACKEND_DIR.parent.parent / "config" / "gateway.yaml"
PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

NEW_ITEM = {"title": "Lemon Sorbet", "price": "4.50", "category": "desserts"}
WRITES = {
    "menu-items": ("/api/menu-items", lambda n: {**NEW_ITEM, "title": f"Lemon Sorbet {n}"}),
    "categories": ("/api/categories", lambda n: {"slug": f"brunch-{n}", "title": f"Brunch {n}"}),
}


def per_second(rate: str) -> float:
    count, _, period = rate.strip().partition("/")
    return int(count) / PERIOD_SECONDS[period.strip()[0]]


@pytest.fixture
def throttle(settings: Settings) -> Callable[..., None]:
    """Set the rates (and NUM_PROXIES) for one test; DRF reloads its settings."""

    def configure(
        *, anon: str | None = "1000/minute", user: str | None = "1000/minute", num_proxies: int = 1
    ) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": anon, "user": user},
            "NUM_PROXIES": num_proxies,
        }

    return configure


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429, response.content
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"].lower()


def via_gateway(client_ip: str) -> dict[str, str]:
    """What a request through the gateway carries: its peer is the gateway, the client in XFF."""
    return {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": client_ip}


@pytest.mark.parametrize("viewset", [MenuItemViewSet, CategoryViewSet])
def test_reads_use_the_anon_throttle_and_writes_the_user_throttle(viewset: type) -> None:
    for action in ("list", "retrieve", None):  # None: OPTIONS
        (throttle,) = viewset(action=action).get_throttles()
        assert isinstance(throttle, AnonRateThrottle), action
    for action in ("create", "update", "partial_update", "destroy"):
        (throttle,) = viewset(action=action).get_throttles()
        assert isinstance(throttle, UserRateThrottle), action


def test_the_n_plus_first_anonymous_read_is_429(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    throttle(anon="3/minute")
    reads = ["/api/menu-items", f"/api/menu-items/{menu[0].id}", "/api/categories"]

    assert [api_client.get(path).status_code for path in reads] == [200, 200, 200]
    assert_throttled(api_client.get("/api/menu-items"))


def test_a_throttled_read_is_never_a_304(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    throttle(anon="1/minute")
    etag = api_client.get("/api/menu-items")["ETag"]

    assert_throttled(api_client.get("/api/menu-items", HTTP_IF_NONE_MATCH=etag))


def test_anonymous_budgets_are_per_forwarded_client(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    throttle(anon="2/minute")
    alice, bob = via_gateway("203.0.113.10"), via_gateway("198.51.100.20")

    assert [api_client.get("/api/menu-items", **alice).status_code for _ in range(2)] == [200, 200]
    assert_throttled(api_client.get("/api/menu-items", **alice))
    assert api_client.get("/api/menu-items", **bob).status_code == 200


def test_only_the_entry_the_gateway_appended_counts(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    """NUM_PROXIES=1: the last entry is the gateway's; anything left of it is not believed."""
    throttle(anon="1/minute")

    first = api_client.get("/api/menu-items", **via_gateway("192.0.2.1, 203.0.113.10"))
    second = api_client.get("/api/menu-items", **via_gateway("192.0.2.2, 203.0.113.10"))

    assert first.status_code == 200
    assert_throttled(second)


def test_without_forwarded_for_the_peer_is_the_client(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    throttle(anon="1/minute")

    assert api_client.get("/api/menu-items", REMOTE_ADDR="10.0.0.1").status_code == 200
    assert_throttled(api_client.get("/api/menu-items", REMOTE_ADDR="10.0.0.1"))
    assert api_client.get("/api/menu-items", REMOTE_ADDR="10.0.0.2").status_code == 200


def test_num_proxies_zero_keys_on_the_peer_alone(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    throttle(anon="1/minute", num_proxies=0)

    assert api_client.get("/api/menu-items", **via_gateway("203.0.113.10")).status_code == 200
    assert_throttled(api_client.get("/api/menu-items", **via_gateway("198.51.100.20")))


def test_signed_in_reads_are_not_anonymous_reads(
    api_client: APIClient,
    client_as: Callable[[User], APIClient],
    throttle: Callable[..., None],
    customer: User,
    menu: list[MenuItem],
) -> None:
    throttle(anon="1/minute", user="1/minute")
    signed_in = client_as(customer)

    assert [signed_in.get("/api/menu-items").status_code for _ in range(3)] == [200, 200, 200]
    assert api_client.get("/api/menu-items").status_code == 200


@pytest.mark.parametrize("resource", sorted(WRITES))
def test_a_managers_writes_are_throttled_by_the_user_rate(
    client_as: Callable[[User], APIClient],
    throttle: Callable[..., None],
    manager: User,
    menu: list[MenuItem],
    resource: str,
) -> None:
    throttle(anon="1/minute", user="2/minute")
    path, payload = WRITES[resource]
    writer = client_as(manager)

    assert [writer.post(path, payload(n), format="json").status_code for n in range(2)] == [201, 201]
    assert_throttled(writer.post(path, payload(2), format="json"))
    # Every write action shares the one budget.
    assert_throttled(writer.delete(f"/api/menu-items/{menu[0].id}"))
    assert MenuItem.objects.filter(pk=menu[0].pk).exists()


def test_write_budgets_are_per_user_not_per_address(
    client_as: Callable[[User], APIClient],
    throttle: Callable[..., None],
    manager: User,
    menu: list[MenuItem],
) -> None:
    throttle(user="1/minute")
    other = User.objects.create_user("second-manager", password=PASSWORD)
    other.groups.add(Group.objects.get(name=MANAGER_GROUP))
    first, second = client_as(manager), client_as(other)

    assert first.post("/api/menu-items", NEW_ITEM, format="json").status_code == 201
    assert_throttled(first.patch(f"/api/menu-items/{menu[0].id}", {"price": "1.00"}, format="json"))
    # Same address (the test client's), another user: a budget of its own.
    assert second.patch(f"/api/menu-items/{menu[0].id}", {"price": "1.00"}, format="json").status_code == 200


def test_reads_and_writes_have_separate_budgets(
    api_client: APIClient,
    client_as: Callable[[User], APIClient],
    throttle: Callable[..., None],
    manager: User,
    menu: list[MenuItem],
) -> None:
    throttle(anon="1/minute", user="1/minute")
    writer = client_as(manager)

    assert writer.post("/api/menu-items", NEW_ITEM, format="json").status_code == 201
    assert writer.get("/api/menu-items").status_code == 200
    assert api_client.get("/api/menu-items").status_code == 200
    assert_throttled(api_client.get("/api/menu-items"))
    assert_throttled(writer.patch(f"/api/menu-items/{menu[0].id}", {"price": "1.00"}, format="json"))


def test_refused_writes_spend_no_budget(
    api_client: APIClient,
    client_as: Callable[[User], APIClient],
    throttle: Callable[..., None],
    customer: User,
    menu: list[MenuItem],
) -> None:
    """Permissions are checked before throttles: 401/403 stay 401/403."""
    throttle(anon="1/minute", user="1/minute")

    customer_client = client_as(customer)

    for _ in range(3):
        assert customer_client.post("/api/menu-items", NEW_ITEM, format="json").status_code == 403
        assert api_client.post("/api/menu-items", NEW_ITEM, format="json").status_code == 401


def test_an_off_rate_is_no_limit(
    api_client: APIClient, throttle: Callable[..., None], menu: list[MenuItem]
) -> None:
    throttle(anon=None)

    assert {api_client.get("/api/categories").status_code for _ in range(5)} == {200}


# -- the shipped settings ------------------------------------------------------------


def settings_from_environment(**env: str) -> dict:
    """The throttle settings a fresh process builds from ``env`` (THROTTLE_* cleared first)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("THROTTLE_")}
    script = (
        "import json; from django.conf import settings; rf = settings.REST_FRAMEWORK; "
        "print(json.dumps({'rates': rf['DEFAULT_THROTTLE_RATES'], 'num_proxies': rf['NUM_PROXIES'], "
        "'cache': settings.CACHES['default']['BACKEND']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BACKEND_DIR,
        env={**environ, "DJANGO_SETTINGS_MODULE": "littlelemon.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_are_per_process_backstops_for_one_proxy() -> None:
    assert settings_from_environment() == {
        "rates": {"anon": "600/minute", "user": "1200/minute"},
        "num_proxies": 1,
        "cache": "django.core.cache.backends.locmem.LocMemCache",
    }


def test_rates_and_proxies_come_from_the_environment() -> None:
    shipped = settings_from_environment(
        THROTTLE_ANON_RATE="20/second", THROTTLE_USER_RATE="off", THROTTLE_NUM_PROXIES="2"
    )

    assert shipped["rates"] == {"anon": "20/second", "user": None}
    assert shipped["num_proxies"] == 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [("THROTTLE_ANON_RATE", "lots"), ("THROTTLE_USER_RATE", "0/minute"), ("THROTTLE_NUM_PROXIES", "-1")],
)
def test_a_malformed_setting_stops_the_backend(variable: str, value: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("THROTTLE_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BACKEND_DIR,
        env={**environ, variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert f"{variable}='{value}'" in result.stderr


def test_the_demo_gateways_limits_bite_first() -> None:
    """Every limit in config/gateway.yaml is tighter than the backend's default backstop."""
    config = yaml.safe_load(GATEWAY_CONFIG.read_text())
    sections = [config.get("throttle") or {}] + [route.get("throttle") or {} for route in config["routes"]]
    gateway_anonymous = [per_second(s["anonymous"]) for s in sections if "anonymous" in s]
    gateway_authenticated = [per_second(s["authenticated"]) for s in sections if "authenticated" in s]
    backend = settings_from_environment()["rates"]

    assert gateway_anonymous and gateway_authenticated
    assert max(gateway_anonymous) < per_second(backend["anon"])
    assert max(gateway_authenticated) < per_second(backend["user"])

