"""Load YAML into pydantic models with errors that name ``file:line: field: problem``.

pydantic knows the *path* of a bad field but not where it stood in the file; YAML nodes
know their line. We keep a map path → line while loading, and translate
:class:`pydantic.ValidationError` into :class:`~poolwarden.errors.ConfigError` with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from poolwarden.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
PathKey = tuple[str | int, ...]


def _lines(node: yaml.Node, path: PathKey, out: dict[PathKey, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            out[(*path, k)] = key.start_mark.line + 1
            _lines(value, (*path, k), out)
            out[(*path, k)] = key.start_mark.line + 1  # the key's line, not the value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[PathKey, int]]:
    """Parse YAML text; return the data and a map path → 1-based line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            f"invalid YAML: {exc.problem}", file=source,
            line=mark.line + 1 if mark else None,
        ) from exc
    lines: dict[PathKey, int] = {}
    if node is not None:
        _lines(node, (), lines)
    return data, lines


def _nearest_line(loc: PathKey, lines: dict[PathKey, int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def validate(model: type[M], data: Any, lines: dict[PathKey, int], source: str) -> M:
    """Validate ``data`` against ``model``; the first error becomes a located ConfigError."""
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc: PathKey = tuple(p for p in err["loc"] if isinstance(p, str | int))
        field = ".".join(str(p) for p in loc) or "(top level)"
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(
            message + suffix, file=source, line=_nearest_line(loc, lines), field=field,
        ) from exc


Transform = Callable[[Any, dict[PathKey, int], str], Any]


def load_model(model: type[M], path: str | Path, *, transform: Transform | None = None) -> M:
    """Read, parse and validate a YAML file; ``transform(data, lines, source)`` may rewrite
    the parsed data first (e.g. expand ``${ENV}``) with located errors of its own."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(p)) from exc
    data, lines = parse_yaml(text, str(p))
    if transform is not None:
        data = transform(data, lines, str(p))
    return validate(model, data, lines, str(p))
