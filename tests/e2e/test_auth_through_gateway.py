"""djoser registration and simplejwt tokens, obtained and used through the gateway."""
from __future__ import annotations

import uuid

import jwt

from .stack import PASSWORDS, Backends, Gateway


def test_register_login_and_me(gateway: Gateway) -> None:
    username = f"e2e-{uuid.uuid4().hex[:10]}"
    password = "lemon-grove-7431"

    registered = gateway.client.post(
        "/auth/users/", {"username": username, "password": password, "email": f"{username}@example.com"}
    )
    assert registered.status == 201, registered

    pair = gateway.client.post("/auth/jwt/create/", {"username": username, "password": password})
    assert pair.status == 200, pair
    assert set(pair.json()) == {"access", "refresh"}

    me = gateway.client.get("/auth/users/me/", token=pair.json()["access"])
    assert me.status == 200, me
    assert me.json()["username"] == username
    assert me.json()["id"] == registered.json()["id"]


def test_tokens_verify_with_the_public_key_the_gateway_is_given(
    gateway: Gateway, backends: Backends
) -> None:
    pair = gateway.client.post(
        "/auth/jwt/create/", {"username": "manager", "password": PASSWORDS["manager"]}
    ).json()

    claims = jwt.decode(
        pair["access"], backends.public_key.read_text(), algorithms=["RS256"], issuer="little-lemon"
    )
    assert claims["token_type"] == "access"
    assert claims["groups"] == ["Manager"]
    assert jwt.decode(pair["refresh"], backends.public_key.read_text(), algorithms=["RS256"])[
        "token_type"
    ] == "refresh"


def test_refresh_through_the_gateway(gateway: Gateway) -> None:
    pair = gateway.client.post(
        "/auth/jwt/create/", {"username": "customer", "password": PASSWORDS["customer"]}
    ).json()

    refreshed = gateway.client.post("/auth/jwt/refresh/", {"refresh": pair["refresh"]})

    assert refreshed.status == 200, refreshed
    assert gateway.client.get("/auth/users/me/", token=refreshed.json()["access"]).status == 200


def test_wrong_password_is_401(gateway: Gateway) -> None:
    reply = gateway.client.post("/auth/jwt/create/", {"username": "manager", "password": "nope"})

    assert reply.status == 401
