"""Secret values read from environment variables or files; never printed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REDACTED", "Secret", "SecretError", "secret_from_env", "secret_from_file"]

REDACTED = "***"


class SecretError(ValueError):
    """A secret could not be read; the message never contains the secret.

    ``note`` says the same for ``check-config --offline``, which checks a config away from
    where it runs: the secret is needed there, not here.
    """

    def __init__(self, message: str, note: str) -> None:
        super().__init__(message)
        self.note = note


@dataclass(frozen=True, eq=False)
class Secret:
    """A secret value with a safe repr; ``source`` says where it came from (``env:NAME``)."""

    _value: str = field(repr=False)
    source: str = ""

    def reveal(self) -> str:
        """Return the secret itself: only for putting it on the wire."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED}, source={self.source!r})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


def secret_from_env(name: str, *, environ: Mapping[str, str] | None = None) -> Secret:
    """Read a secret from the environment variable ``name``."""
    env = os.environ if environ is None else environ
    if name not in env:
        raise SecretError(f"environment variable {name} is not set; export it before starting",
                          f"{name} is not set here; it must be set where the exporter runs")
    value = env[name]
    if value == "":
        raise SecretError(f"environment variable {name} is empty; set it to the secret",
                          f"{name} is empty here; it must hold the secret where the exporter "
                          "runs")
    return Secret(value, source=f"env:{name}")


def secret_from_file(path: str) -> Secret:
    """Read a secret from a file; one trailing newline (as editors and kubectl write) is dropped."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretError(f"file {path} does not exist; mount the secret there",
                          f"{path} does not exist here; it must exist where the exporter "
                          "runs") from None
    except PermissionError:
        raise SecretError(f"file {path} is not readable by this user; fix its mode",
                          f"{path} is not readable here; the exporter's user must be able "
                          "to read it where it runs") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretError(f"file {path} cannot be read ({type(exc).__name__})",
                          f"{path} cannot be read here ({type(exc).__name__}); it must be "
                          "readable where the exporter runs") from None
    value = raw[:-2] if raw.endswith("\r\n") else raw[:-1] if raw.endswith("\n") else raw
    if value == "":
        raise SecretError(f"file {path} is empty; write the secret into it",
                          f"{path} is empty here; it must hold the secret where the exporter "
                          "runs")
    return Secret(value, source=f"file:{path}")
