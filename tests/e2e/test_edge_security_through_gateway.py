"""The gateway verifying the sample backend's own simplejwt tokens, as config/gateway.yaml does."""
from __future__ import annotations

import uuid
from collections.abc import Callable

from .gateway_config import jwt_auth
from .stack import Backends, GatewayStarter

WRITES = ["POST", "PUT", "PATCH", "DELETE"]


def secured_routes() -> list[dict[str, object]]:
    """The shape of config/gateway.yaml: open reads, Manager-only writes, /auth untouched."""
    return [
        {"name": "menu-read", "match": {"path": "/api", "methods": ["GET", "HEAD"]}, "upstream": "menu", "auth": "optional"},
        {"name": "menu-write", "match": {"path": "/api", "methods": WRITES}, "upstream": "menu",
         "auth": "required", "require_claims": {"groups": "Manager"}},
        {"name": "auth", "match": {"path": "/auth"}, "upstream": "menu", "auth": "none"},
    ]


def test_simplejwt_tokens_are_verified_at_the_gateway(
    start_gateway: GatewayStarter, backends: Backends, tokens: Callable[[str], dict[str, str]]
) -> None:
    gateway = start_gateway(
        auth=jwt_auth(backends.public_key, forward_claims={"user_id": "X-User-Id"}), routes=secured_routes()
    )
    client = gateway.client
    dish = {"title": f"E2E Gateway Tart {uuid.uuid4().hex[:8]}", "price": "5.25", "category": "desserts"}

    assert client.get("/api/menu-items?perpage=1").status == 200  # anonymous reads
    assert client.get("/api/menu-items?perpage=1", token=tokens("customer")["access"]).status == 200

    anonymous = client.post("/api/menu-items", dish)
    assert anonymous.status == 401 and anonymous.headers["WWW-Authenticate"] == 'Bearer realm="gateway"'
    customer = client.post("/api/menu-items", dish, token=tokens("customer")["access"])
    assert customer.status == 403 and customer.headers["Content-Type"] == "application/problem+json"
    refresh = client.post("/api/menu-items", dish, token=tokens("manager")["refresh"])
    assert refresh.status == 401, refresh  # token_type: refresh is not an access token
    assert 'error="invalid_token"' in refresh.headers["WWW-Authenticate"]
    forged_identity = client.post("/api/menu-items", dish, headers={"X-User-Id": "1", "X_User_Id": "1"})
    assert forged_identity.status == 401

    manager = client.post("/api/menu-items", dish, token=tokens("manager")["access"])
    assert manager.status == 201, manager
    assert client.get(f"/api/menu-items/{manager.json()['id']}").status == 200


def test_login_and_refresh_pass_through_an_auth_none_route(
    start_gateway: GatewayStarter, backends: Backends, tokens: Callable[[str], dict[str, str]]
) -> None:
    gateway = start_gateway(auth=jwt_auth(backends.public_key), routes=secured_routes())
    refreshed = gateway.client.post("/auth/jwt/refresh/", {"refresh": tokens("customer")["refresh"]})
    assert refreshed.status == 200, refreshed
    assert gateway.client.get("/auth/users/me/", token=refreshed.json()["access"]).status == 200
