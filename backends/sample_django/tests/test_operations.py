"""What operators and the gateway rely on: /healthz and X-Served-By, in-process.

The same behaviour under real gunicorn processes is in test_gunicorn.py.
"""
from __future__ import annotations

import os
import socket

import pytest
from django.test import Client
from pytest_django import Settings

pytestmark = pytest.mark.django_db


def test_healthz_is_ok(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


def test_healthz_answers_head(client: Client) -> None:
    assert client.head("/healthz").status_code == 200


def test_healthz_refuses_post(client: Client) -> None:
    assert client.post("/healthz").status_code == 405


def test_served_by_names_the_configured_instance(settings: Settings) -> None:
    settings.INSTANCE_NAME = "backend-7"

    response = Client().get("/api/menu-items")

    assert response["X-Served-By"] == "backend-7"


def test_served_by_defaults_to_host_and_pid(settings: Settings) -> None:
    settings.INSTANCE_NAME = ""

    response = Client().get("/healthz")

    assert response["X-Served-By"] == f"{socket.gethostname()}:{os.getpid()}"


@pytest.mark.parametrize("path", ["/nowhere", "/api/menu-items/999999"])
def test_served_by_is_on_errors_too(settings: Settings, path: str) -> None:
    settings.INSTANCE_NAME = "backend-7"

    response = Client().get(path)

    assert response.status_code == 404
    assert response["X-Served-By"] == "backend-7"


def test_unknown_host_is_refused_but_still_named(settings: Settings) -> None:
    settings.INSTANCE_NAME = "backend-7"

    response = Client().get("/healthz", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["X-Served-By"] == "backend-7"


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8001", "[::1]:8080"])
def test_gateway_preserved_hosts_are_allowed(client: Client, host: str) -> None:
    assert client.get("/healthz", HTTP_HOST=host).status_code == 200
