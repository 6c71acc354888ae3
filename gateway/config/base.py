"""The base of every config model, in its own module so that section modules
(``firewall.py``, ``auth.py``, ``cors.py``, ...) and ``models.py``, which composes
them, can both import it without importing each other in a circle."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Model"]


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=False)
