"""``--env-file``: variables for the config's ``*_env`` lookups, read from a ``NAME=value`` file.

Values are secrets: no message here ever contains one, nor the text of a line."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["EnvFile", "EnvFileError", "environ_with", "read_env_file"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvFileError(ValueError):
    """The file cannot be used; the message names the file (and line) and never a value."""


@dataclass(frozen=True)
class EnvFile:
    """The variables of one env file, and warnings about it (its mode)."""

    path: str
    values: dict[str, str] = field(repr=False)
    warnings: tuple[str, ...] = ()


def _unquote(value: str) -> str:
    """One pair of matching quotes around the whole value is dropped, as shells would."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _mode_check(path: str, fd: int) -> tuple[str, ...]:
    """Refuse a file others may read or write; warn about one its group may read."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise EnvFileError(
            f"{path}: readable or writable by others (mode {mode:03o}), and it holds secrets; "
            f"run chmod 600 {path}"
        )
    if mode & (stat.S_IRGRP | stat.S_IWGRP):
        return (f"{path}: its group may read or write it (mode {mode:03o}); "
                f"chmod 600 {path} keeps the secrets to you",)
    return ()


def read_env_file(path: str) -> EnvFile:
    """Read ``NAME=value`` lines: blank lines and ``#`` comments are skipped, ``export `` before
    a name is allowed, the value is the rest of the line (one pair of surrounding quotes
    removed). A malformed line or a name given twice is an error naming the file and line."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise EnvFileError(f"{path}: no such file") from None
    except PermissionError:
        raise EnvFileError(f"{path}: not readable by this user; fix its owner or mode") from None
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        warnings = _mode_check(path, fh.fileno())
        try:
            text = fh.read().decode("utf-8")
        except UnicodeDecodeError:
            raise EnvFileError(f"{path}: not UTF-8 text") from None
        except OSError as exc:
            raise EnvFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    values: dict[str, str] = {}
    first: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if not stripped.strip() or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        name, equals, value = stripped.partition("=")
        if not equals or not _NAME.fullmatch(name):
            raise EnvFileError(
                f"{path}:{number}: not a NAME=value line; write each variable as NAME=value "
                "(a name of letters, digits and _, no spaces around =)"
            )
        if name in first:
            raise EnvFileError(f"{path}:{number}: {name} is set again (first on line "
                               f"{first[name]}); keep one")
        first[name] = number
        values[name] = _unquote(value)
    return EnvFile(path, values, warnings)


def environ_with(env_file: EnvFile | None,
                 environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with the file's variables filling in those not set; a variable set in
    the real environment (even to an empty value) wins over the file."""
    real = dict(os.environ if environ is None else environ)
    if env_file is None:
        return real
    return {**env_file.values, **real}
