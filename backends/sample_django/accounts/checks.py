"""System check: can this backend sign tokens the gateway will accept?

Settings load even without keys (``generate_jwt_keys`` needs them to), so the
gap is reported here -- by ``migrate``, ``seed``, ``check`` -- with the fix.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from accounts.jwt_keys import KeyPair, key_pair_problem

__all__ = ["check_jwt_key_pair"]


@register(Tags.security)
def check_jwt_key_pair(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    pair = KeyPair(private=settings.JWT_PRIVATE_KEY_FILE, public=settings.JWT_PUBLIC_KEY_FILE)
    problem = key_pair_problem(pair)
    if problem is None:
        return []
    hint = (
        "Run `python manage.py generate_jwt_keys`, or point JWT_PRIVATE_KEY_FILE and "
        "JWT_PUBLIC_KEY_FILE at an existing RSA key pair."
    )
    if not pair.private.exists() and not pair.public.exists():
        # Reads still work; only issuing and checking tokens does not.
        return [Warning(problem, hint=hint, id="accounts.W001")]
    return [Error(problem, hint=hint, id="accounts.E001")]
