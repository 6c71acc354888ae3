"""What the status page says about the configuration: which file, loaded when, and
how the reloads went.

``gateway_config_reloads_total`` counts reloads for alerting; an operator who opens
the page after a refused SIGHUP also needs *why* it was refused and when, without
reading the logs. One :class:`ReloadHistory` is kept by whoever owns SIGHUP: the
single process (gateway/server.py) or, with workers, the supervisor
(gateway/supervisor.py), whose file is the one the operator edits (its workers load
a private copy).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["ReloadHistory", "ReloadOutcome"]

_MAX_ERROR_CHARS = 4000
"""A refused file can produce many errors; the page shows the start of the list
(the log has all of it)."""


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    result: Literal["success", "failure"]
    at: float
    """Wall-clock time (``time.time()``)."""
    error: str | None
    """Why a failed reload was refused (the validation errors)."""


class ReloadHistory:
    def __init__(self, config_path: Path, *, clock: Callable[[], float] = time.time) -> None:
        # abspath, not resolve(): a Kubernetes ConfigMap mount is a chain of symlinks,
        # and the operator knows the path they gave, not the ..data/ target.
        self.file = os.path.abspath(config_path)
        self._clock = clock
        self.started_at = clock()
        self.loaded_at = self.started_at
        """When the configuration in force was loaded (start-up or the last successful reload)."""
        self.successes = 0
        self.failures = 0
        self.last: ReloadOutcome | None = None

    def succeeded(self) -> None:
        now = self._clock()
        self.successes += 1
        self.loaded_at = now
        self.last = ReloadOutcome("success", now, None)

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last = ReloadOutcome("failure", self._clock(), error[:_MAX_ERROR_CHARS])

    def status(self) -> dict[str, Any]:
        now = self._clock()
        last = None
        if self.last is not None:
            last = {
                "result": self.last.result,
                "at": round(self.last.at, 3),
                "age_s": round(max(0.0, now - self.last.at), 1),
                "error": self.last.error,
            }
        return {
            "file": self.file,
            "started_at": round(self.started_at, 3),
            "loaded_at": round(self.loaded_at, 3),
            "loaded_age_s": round(max(0.0, now - self.loaded_at), 1),
            "reloads": {"success": self.successes, "failure": self.failures},
            "last_reload": last,
        }
