"""Management commands: ``seed`` and ``generate_jwt_keys`` are safe to repeat."""
from __future__ import annotations

import stat
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from pytest_django import Settings
from rest_framework.test import APIClient

from accounts.jwt_keys import KeyPair, key_pair_problem
from menu.models import Category, MenuItem
from menu.permissions import MANAGER_GROUP
from menu.seed_data import CATEGORIES, MENU_ITEMS


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
class TestSeed:
    def test_loads_menu_group_and_users(self) -> None:
        output = run("seed")

        assert Category.objects.count() == len(CATEGORIES) >= 5
        assert MenuItem.objects.count() == len(MENU_ITEMS) >= 24
        assert MenuItem.objects.filter(title="Greek Salad", category__slug="appetizers").exists()
        assert list(User.objects.get(username="manager").groups.values_list("name", flat=True)) == [MANAGER_GROUP]
        assert not User.objects.get(username="customer").groups.exists()
        assert "lemon-manager-1" in output and "lemon-customer-1" in output

    def test_default_passwords_work(self) -> None:
        run("seed")

        assert authenticate(username="manager", password="lemon-manager-1") is not None
        assert authenticate(username="customer", password="lemon-customer-1") is not None

    def test_is_idempotent(self) -> None:
        run("seed")
        snapshot = sorted(MenuItem.objects.values_list("id", "title", "price", "featured", "category__slug"))

        second = run("seed")

        assert sorted(MenuItem.objects.values_list("id", "title", "price", "featured", "category__slug")) == snapshot
        assert Category.objects.count() == len(CATEGORIES)
        assert User.objects.count() == 2
        assert Group.objects.filter(name=MANAGER_GROUP).count() == 1
        assert "0 created" in second

    def test_restores_changed_rows_and_keeps_added_ones(self) -> None:
        run("seed")
        MenuItem.objects.filter(title="Greek Salad").update(price="99.00")
        MenuItem.objects.create(title="Manager's Pick", price="9.00", category=Category.objects.first())
        User.objects.get(username="customer").groups.add(Group.objects.get(name=MANAGER_GROUP))

        run("seed")

        assert str(MenuItem.objects.get(title="Greek Salad").price) == "12.99"
        assert MenuItem.objects.filter(title="Manager's Pick").exists()
        assert not User.objects.get(username="customer").groups.exists()

    def test_passwords_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MANAGER_PASSWORD", "env-manager-pw")
        monkeypatch.setenv("CUSTOMER_PASSWORD", "env-customer-pw")

        output = run("seed")

        assert authenticate(username="manager", password="env-manager-pw") is not None
        assert authenticate(username="customer", password="env-customer-pw") is not None
        assert "env-manager-pw" in output

    def test_seeded_manager_can_write_and_customer_cannot(self) -> None:
        run("seed")
        statuses = {}
        for username, password in (("manager", "lemon-manager-1"), ("customer", "lemon-customer-1")):
            client = APIClient()
            tokens = client.post("/auth/jwt/create/", {"username": username, "password": password}, format="json")
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access']}")
            item = {"title": f"Special of {username}", "price": "10.00", "category": "specials"}
            statuses[username] = client.post("/api/menu-items", item, format="json").status_code

        assert statuses == {"manager": 201, "customer": 403}


class TestGenerateJwtKeys:
    def test_creates_a_matching_pair_with_private_mode_0600(self, tmp_path: Path) -> None:
        output = run("generate_jwt_keys", "--dir", str(tmp_path / "keys"))

        pair = KeyPair.in_directory(tmp_path / "keys")
        assert "created" in output
        assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
        assert pair.private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
        assert pair.public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
        assert key_pair_problem(pair) is None

    def test_is_2048_bit_rsa(self, tmp_path: Path) -> None:
        from cryptography.hazmat.primitives import serialization

        run("generate_jwt_keys", "--dir", str(tmp_path))

        key = serialization.load_pem_public_key((tmp_path / "jwt.pub").read_bytes())
        assert key.key_size == 2048  # type: ignore[union-attr]

    def test_second_run_keeps_the_keys(self, tmp_path: Path) -> None:
        run("generate_jwt_keys", "--dir", str(tmp_path))
        before = (tmp_path / "jwt.key").read_bytes(), (tmp_path / "jwt.pub").read_bytes()

        output = run("generate_jwt_keys", "--dir", str(tmp_path))

        assert "already present" in output
        assert ((tmp_path / "jwt.key").read_bytes(), (tmp_path / "jwt.pub").read_bytes()) == before

    def test_derives_a_missing_public_key(self, tmp_path: Path) -> None:
        run("generate_jwt_keys", "--dir", str(tmp_path))
        public = (tmp_path / "jwt.pub").read_bytes()
        (tmp_path / "jwt.pub").unlink()

        run("generate_jwt_keys", "--dir", str(tmp_path))

        assert (tmp_path / "jwt.pub").read_bytes() == public

    def test_refuses_to_replace_a_lone_public_key(self, tmp_path: Path) -> None:
        run("generate_jwt_keys", "--dir", str(tmp_path))
        (tmp_path / "jwt.key").unlink()

        with pytest.raises(CommandError, match="does not"):
            run("generate_jwt_keys", "--dir", str(tmp_path))
        assert not (tmp_path / "jwt.key").exists()

    def test_refuses_a_mismatched_pair(self, tmp_path: Path) -> None:
        run("generate_jwt_keys", "--dir", str(tmp_path / "a"))
        run("generate_jwt_keys", "--dir", str(tmp_path / "b"))
        (tmp_path / "a" / "jwt.pub").write_bytes((tmp_path / "b" / "jwt.pub").read_bytes())

        with pytest.raises(CommandError, match="not the public half"):
            run("generate_jwt_keys", "--dir", str(tmp_path / "a"))

    def test_without_dir_uses_the_configured_files(self, tmp_path: Path, settings: Settings) -> None:
        settings.JWT_PRIVATE_KEY_FILE = tmp_path / "conf" / "signing.pem"
        settings.JWT_PUBLIC_KEY_FILE = tmp_path / "conf" / "verifying.pem"

        run("generate_jwt_keys")

        assert key_pair_problem(KeyPair(tmp_path / "conf" / "signing.pem", tmp_path / "conf" / "verifying.pem")) is None
