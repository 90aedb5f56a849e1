"""The base of every configuration section: frozen, unknown keys refused (a typo such as
``intervall:`` must be an error, not a silent default), and secrets given inline
(``${ENV}``) or as a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from poolwarden.errors import ConfigError


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Secret(_Model):
    """A value given inline (preferably as ``${ENV}``) or read from a file."""

    value: str | None = None
    file: Path | None = None

    def reveal(self) -> str:
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ConfigError("cannot read the secret", file=str(self.file)) from exc
        return self.value or ""


def _secret(value: Any, file: Any) -> Secret | None:
    if value is None and file is None:
        return None
    return Secret(value=value, file=file)
