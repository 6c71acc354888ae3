"""``manage.py generate_jwt_keys [--dir DIR]``: create the RS256 key pair if missing.

Idempotent: existing keys are never overwritten, so ``make demo`` can run it
every time. Without ``--dir`` it writes where the settings read from
(``JWT_PRIVATE_KEY_FILE`` / ``JWT_PUBLIC_KEY_FILE``); with ``--dir`` it writes
``DIR/jwt.key`` (mode 0600) and ``DIR/jwt.pub``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.jwt_keys import KeyPair, KeyPairError, Outcome, ensure_key_pair


class Command(BaseCommand):
    help = "Create the 2048-bit RSA key pair that signs JWTs (PEM), unless it exists."
    # The key-pair check would only report what this command is about to fix.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="write DIR/jwt.key and DIR/jwt.pub instead of the configured files",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory: Path | None = options["dir"]
        if directory is None:
            pair = KeyPair(private=settings.JWT_PRIVATE_KEY_FILE, public=settings.JWT_PUBLIC_KEY_FILE)
        else:
            pair = KeyPair.in_directory(directory.resolve())
        try:
            outcome = ensure_key_pair(pair)
        except KeyPairError as exc:
            raise CommandError(str(exc)) from exc
        if outcome is Outcome.KEPT:
            self.stdout.write(f"JWT keys already present: {pair.private}, {pair.public}")
        else:
            self.stdout.write(
                self.style.SUCCESS(f"JWT keys {outcome.value}: {pair.private}, {pair.public}")
            )
