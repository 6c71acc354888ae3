"""Reading the YAML file: safe, strict, and with environment interpolation.

Why not ``yaml.safe_load``: it silently keeps the last of two duplicate keys, which
hides exactly the kind of typo that takes an API down (two ``ttl:`` lines, the
wrong one winning). We compose the node tree with the safe loader, walk it once to
refuse duplicates with their YAML path, interpolate ``${NAME}`` /
``${NAME:-default}`` / ``${NAME:?message}`` inside scalars, then construct plain
Python data.

``${NAME:?message}`` (the shell's and Compose's spelling) refuses an unset *or empty*
variable: a file that opens an admin listener on 0.0.0.0 must be able to say "no
token, no start" where ``${NAME}`` would let ``ADMIN_TOKEN=`` through as "no token".

Interpolation happens per scalar rather than on the raw text so that a secret
containing ``#`` or ``: `` stays one value instead of rewriting the document; a
plain scalar is re-resolved after substitution, so ``port: ${PORT}`` still gives an
int and ``secret: ${JWT_SECRET:-}`` still gives null, as text substitution would.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from gateway.config.errors import ConfigError, ConfigIssue, format_path

__all__ = ["load_yaml", "interpolate"]

_VAR_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*)|:\?([^}]*))?\}")


class _UnsetVariable(Exception):
    def __init__(self, name: str, *, required: str | None = None) -> None:
        super().__init__(name)
        self.name = name
        self.required = required
        """``None`` for a plain ``${NAME}``; the (possibly empty) message of ``${NAME:?message}``."""

    def describe(self) -> str:
        if self.required is None:
            return (
                f"environment variable {self.name} is not set "
                f"(write ${{{self.name}:-default}} to give a default)"
            )
        message = self.required.strip()
        return f"environment variable {self.name} is not set or empty" + (f": {message}" if message else "")


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Replace ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}``; ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default, required = match.group(1), match.group(2), match.group(3)
        value = environ.get(name)
        if required is not None and not value:
            raise _UnsetVariable(name, required=required)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise _UnsetVariable(name)
            return default
        return value

    return _VAR_RE.sub(replace, text)


def _walk(
    node: yaml.Node,
    path: tuple[str | int, ...],
    loader: yaml.SafeLoader,
    environ: Mapping[str, str],
    issues: list[ConfigIssue],
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                issues.append(
                    ConfigIssue(format_path(path), "YAML merge keys (<<) are not supported")
                )
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key in seen:
                first = seen[key].start_mark.line + 1
                issues.append(
                    ConfigIssue(
                        format_path(path + (key,)),
                        f"duplicate key (first defined on line {first})",
                    )
                )
            else:
                seen[key] = key_node
            _walk(value_node, path + (key,), loader, environ, issues)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), loader, environ, issues)
    elif isinstance(node, yaml.ScalarNode) and "$" in node.value:
        try:
            new_value = interpolate(node.value, environ)
        except _UnsetVariable as exc:
            issues.append(ConfigIssue(format_path(path), exc.describe()))
            return
        if node.style is None:  # plain scalar: type it as if it had been written so
            node.tag = loader.resolve(yaml.ScalarNode, new_value, (True, False))
        node.value = new_value


def load_yaml(text: str, *, environ: Mapping[str, str] | None = None) -> Any:
    """Parse one YAML document safely; raise :class:`ConfigError` listing every problem."""
    env = os.environ if environ is None else environ
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([ConfigIssue(where, f"invalid YAML: {problem}")]) from None
        if node is None:
            return {}
        issues: list[ConfigIssue] = []
        _walk(node, (), loader, env, issues)
        if issues:
            raise ConfigError(issues)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            # e.g. a !!python/object tag: the safe constructor refuses it.
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([ConfigIssue(where, f"invalid YAML: {problem}")]) from None
    finally:
        loader.dispose()
