"""pytest plugin: a throwaway RS256 key pair for the whole test session.

The settings read ``JWT_PRIVATE_KEY_FILE`` / ``JWT_PUBLIC_KEY_FILE`` when they
are imported, and pytest-django imports them while pytest loads the initial
conftests -- before any conftest.py could set an environment variable. A
``wrapper`` hook around ``pytest_load_initial_conftests`` runs first, so the
keys exist and the variables point at them by the time Django starts. The
developer's own ``keys/`` are never read or touched.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

from accounts.jwt_keys import KeyPair, ensure_key_pair

_KEY_DIR_ENV = "LITTLELEMON_TEST_KEY_DIR"


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    directory = Path(tempfile.mkdtemp(prefix="littlelemon-test-keys-"))
    pair = KeyPair.in_directory(directory)
    ensure_key_pair(pair)
    os.environ["JWT_PRIVATE_KEY_FILE"] = str(pair.private)
    os.environ["JWT_PUBLIC_KEY_FILE"] = str(pair.public)
    os.environ[_KEY_DIR_ENV] = str(directory)
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = os.environ.pop(_KEY_DIR_ENV, None)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
