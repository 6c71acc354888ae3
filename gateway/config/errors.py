"""Configuration errors that carry the YAML path of what is wrong.

``gateway check`` prints every issue as ``routes[2].cache.ttl: expected a duration
like 30s, got 'soon'``: the operator goes straight to the line, and sees all the
problems of a file at once rather than one per attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ConfigIssue", "ConfigError", "format_path"]


def format_path(parts: Iterable[str | int]) -> str:
    """``("routes", 2, "cache", "ttl")`` -> ``routes[2].cache.ttl``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """One or more problems with a configuration; ``issues`` lists them all."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))
