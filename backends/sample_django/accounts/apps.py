from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and JWT keys"

    def ready(self) -> None:
        # Registers the key-pair system check.
        from accounts import checks  # noqa: F401
