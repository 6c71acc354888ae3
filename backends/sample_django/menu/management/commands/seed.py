"""``manage.py seed``: load the demo menu and the demo users, idempotently.

Run it as often as you like: categories and items are matched by slug and
title and brought back to the seed values, users are matched by username and
get the configured password again, so what the command prints is always
what works. Nothing is deleted: items a manager added stay.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from menu.models import Category, MenuItem
from menu.permissions import MANAGER_GROUP
from menu.seed_data import CATEGORIES, MENU_ITEMS

DEFAULT_MANAGER_PASSWORD = "lemon-manager-1"
DEFAULT_CUSTOMER_PASSWORD = "lemon-customer-1"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    is_manager: bool


class Command(BaseCommand):
    help = (
        "Load the Little Lemon demo menu, the Manager group and the demo users "
        "'manager' and 'customer' (passwords from MANAGER_PASSWORD / "
        "CUSTOMER_PASSWORD). Safe to run repeatedly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--manager-password",
            default=os.environ.get("MANAGER_PASSWORD") or DEFAULT_MANAGER_PASSWORD,
            help="password of the 'manager' user (env MANAGER_PASSWORD)",
        )
        parser.add_argument(
            "--customer-password",
            default=os.environ.get("CUSTOMER_PASSWORD") or DEFAULT_CUSTOMER_PASSWORD,
            help="password of the 'customer' user (env CUSTOMER_PASSWORD)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        users = (
            DemoUser("manager", options["manager_password"], is_manager=True),
            DemoUser("customer", options["customer_password"], is_manager=False),
        )
        with transaction.atomic():
            categories = self._seed_categories()
            created, updated = self._seed_items(categories)
            self._seed_users(users)

        self.stdout.write(
            f"Menu: {len(categories)} categories, {len(MENU_ITEMS)} seeded menu items "
            f"({created} created, {updated} updated, {MenuItem.objects.count()} in total)."
        )
        self.stdout.write(f"Users (members of group {MANAGER_GROUP!r} may change the menu):")
        for user in users:
            groups = MANAGER_GROUP if user.is_manager else "-"
            self.stdout.write(f"  {user.username:<9} password: {user.password:<20} groups: {groups}")

    def _seed_categories(self) -> dict[str, Category]:
        categories: dict[str, Category] = {}
        for slug, title in CATEGORIES.items():
            category, _ = Category.objects.update_or_create(slug=slug, defaults={"title": title})
            categories[slug] = category
        return categories

    def _seed_items(self, categories: dict[str, Category]) -> tuple[int, int]:
        created = updated = 0
        for item in MENU_ITEMS:
            _, was_created = MenuItem.objects.update_or_create(
                title=item.title,
                defaults={
                    "price": Decimal(item.price),
                    "featured": item.featured,
                    "category": categories[item.category],
                },
            )
            if was_created:
                created += 1
            else:
                updated += 1
        return created, updated

    def _seed_users(self, users: tuple[DemoUser, ...]) -> None:
        manager_group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
        user_model = get_user_model()
        for demo in users:
            user: AbstractUser
            user, _ = user_model.objects.get_or_create(
                username=demo.username,
                defaults={"email": f"{demo.username}@littlelemon.example"},
            )
            user.is_active = True
            user.set_password(demo.password)
            user.save()
            # Re-assert membership both ways so the printed table stays true.
            if demo.is_manager:
                user.groups.add(manager_group)
            else:
                user.groups.remove(manager_group)
