"""djoser registration and simplejwt tokens, as the gateway will see them."""
from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from menu.permissions import MANAGER_GROUP

pytestmark = pytest.mark.django_db

ObtainTokens = Callable[..., dict[str, str]]


def decode(token: str, public_key_pem: str) -> dict:
    """Verify the way a gateway would: RS256 only, the public key, exp required."""
    return jwt.decode(
        token,
        public_key_pem,
        algorithms=["RS256"],
        issuer="little-lemon",
        options={"require": ["exp", "iat", "token_type", "user_id"]},
    )


def test_register_then_login_then_me(api_client: APIClient) -> None:
    registration = {"username": "ada", "password": "lemon-tree-42", "email": "ada@example.com"}

    created = api_client.post("/auth/users/", registration, format="json")
    assert created.status_code == 201, created.content
    assert "password" not in created.json()

    tokens = api_client.post(
        "/auth/jwt/create/", {"username": "ada", "password": "lemon-tree-42"}, format="json"
    )
    assert tokens.status_code == 200
    assert set(tokens.json()) == {"access", "refresh"}

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
    me = api_client.get("/auth/users/me/")
    assert me.status_code == 200
    assert me.json() == {"id": created.json()["id"], "username": "ada", "email": "ada@example.com"}


def test_registration_enforces_password_validators(api_client: APIClient) -> None:
    response = api_client.post("/auth/users/", {"username": "bob", "password": "12345678"}, format="json")

    assert response.status_code == 400
    assert "password" in response.json()


def test_me_needs_a_token(api_client: APIClient) -> None:
    assert api_client.get("/auth/users/me/").status_code == 401


def test_wrong_password_is_401(api_client: APIClient, customer: User) -> None:
    response = api_client.post(
        "/auth/jwt/create/", {"username": customer.username, "password": "wrong"}, format="json"
    )

    assert response.status_code == 401


def test_access_token_claims(obtain_tokens: ObtainTokens, manager: User, public_key_pem: str) -> None:
    access = obtain_tokens(manager.username)["access"]

    assert jwt.get_unverified_header(access)["alg"] == "RS256"
    claims = decode(access, public_key_pem)
    assert claims["token_type"] == "access"
    assert claims["user_id"] == str(manager.pk)
    assert claims["groups"] == [MANAGER_GROUP]
    assert claims["iss"] == "little-lemon"
    assert 14 * 60 <= claims["exp"] - claims["iat"] <= 15 * 60
    assert "aud" not in claims


def test_customer_has_no_groups(obtain_tokens: ObtainTokens, customer: User, public_key_pem: str) -> None:
    claims = decode(obtain_tokens(customer.username)["access"], public_key_pem)

    assert claims["groups"] == []


def test_groups_are_sorted_names(obtain_tokens: ObtainTokens, customer: User, public_key_pem: str) -> None:
    for name in ("Waiters", MANAGER_GROUP, "Cooks"):
        customer.groups.add(Group.objects.get_or_create(name=name)[0])

    claims = decode(obtain_tokens(customer.username)["access"], public_key_pem)

    assert claims["groups"] == ["Cooks", MANAGER_GROUP, "Waiters"]


def test_refresh_token_is_typed_refresh(obtain_tokens: ObtainTokens, customer: User, public_key_pem: str) -> None:
    claims = decode(obtain_tokens(customer.username)["refresh"], public_key_pem)

    assert claims["token_type"] == "refresh"
    assert claims["user_id"] == str(customer.pk)


def test_tokens_do_not_verify_with_another_key(obtain_tokens: ObtainTokens, customer: User) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = stranger.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(obtain_tokens(customer.username)["access"], pem, algorithms=["RS256"])


def test_refresh_issues_a_new_access_token(
    api_client: APIClient, obtain_tokens: ObtainTokens, customer: User, public_key_pem: str
) -> None:
    pair = obtain_tokens(customer.username)
    time.sleep(1)  # so the new token's iat differs

    response = api_client.post("/auth/jwt/refresh/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 200
    access = response.json()["access"]
    assert access != pair["access"]
    claims = decode(access, public_key_pem)
    assert claims["token_type"] == "access"
    assert claims["user_id"] == str(customer.pk)
    assert claims["groups"] == []


def test_refresh_rederives_groups(
    api_client: APIClient, obtain_tokens: ObtainTokens, manager: User, public_key_pem: str
) -> None:
    refresh = obtain_tokens(manager.username)["refresh"]
    manager.groups.clear()

    access = api_client.post("/auth/jwt/refresh/", {"refresh": refresh}, format="json").json()["access"]

    assert decode(access, public_key_pem)["groups"] == []


def test_refresh_refuses_an_access_token(
    api_client: APIClient, obtain_tokens: ObtainTokens, customer: User
) -> None:
    access = obtain_tokens(customer.username)["access"]

    response = api_client.post("/auth/jwt/refresh/", {"refresh": access}, format="json")

    assert response.status_code == 401


def test_refresh_for_a_deleted_user_is_401(
    api_client: APIClient, obtain_tokens: ObtainTokens, customer: User
) -> None:
    refresh = obtain_tokens(customer.username)["refresh"]
    customer.delete()

    response = api_client.post("/auth/jwt/refresh/", {"refresh": refresh}, format="json")

    assert response.status_code == 401


def test_refresh_token_is_not_accepted_as_access(
    api_client: APIClient, obtain_tokens: ObtainTokens, customer: User
) -> None:
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {obtain_tokens(customer.username)['refresh']}")

    assert api_client.get("/auth/users/me/").status_code == 401


def test_verify(api_client: APIClient, obtain_tokens: ObtainTokens, customer: User) -> None:
    access = obtain_tokens(customer.username)["access"]

    assert api_client.post("/auth/jwt/verify/", {"token": access}, format="json").status_code == 200
    tampered = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    assert api_client.post("/auth/jwt/verify/", {"token": tampered}, format="json").status_code == 401
