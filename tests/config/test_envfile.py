"""``--env-file``: NAME=value lines read for the config's secret lookups, never echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.config import EnvFileError, environ_with, read_env_file


def _write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    return str(path)


def test_lines_comments_export_and_quotes(tmp_path: Path) -> None:
    """Blank lines and # comments are skipped, ``export`` is allowed, the value is the rest of
    the line with one pair of surrounding quotes removed."""
    path = _write(tmp_path / "s.env", "# secrets\n\nA=one\n  export B=two=2\r\nC='th ree'\n"
                  'D=""\nE="x\n')
    env = read_env_file(path)
    assert env.values == {"A": "one", "B": "two=2", "C": "th ree", "D": "", "E": '"x'}
    assert env.warnings == ()


def test_the_real_environment_wins(tmp_path: Path) -> None:
    """File values fill in variables the environment lacks; a set variable, even empty, wins."""
    env = read_env_file(_write(tmp_path / "s.env", "A=file\nB=file\nC=file\n"))
    merged = environ_with(env, {"A": "real", "B": "", "PATH": "/bin"})
    assert merged == {"A": "real", "B": "", "C": "file", "PATH": "/bin"}


@pytest.mark.parametrize("line", ["just-a-secret-Zq9", "A B=1", "=value-Zq9", " =x", "1A=x"])
def test_a_malformed_line_is_named_not_shown(tmp_path: Path, line: str) -> None:
    """A line that is not NAME=value is an error naming the file and line, without its text."""
    path = _write(tmp_path / "s.env", f"GOOD=1\n{line}\n")
    with pytest.raises(EnvFileError) as exc:
        read_env_file(path)
    assert str(exc.value).startswith(f"{path}:2: not a NAME=value line; write each variable")
    assert "Zq9" not in str(exc.value) and "\n" not in str(exc.value)


def test_a_name_given_twice_is_refused(tmp_path: Path) -> None:
    """The same name on two lines is an error naming both lines."""
    path = _write(tmp_path / "s.env", "A=1\n# x\nA=2\n")
    with pytest.raises(EnvFileError, match=r":3: A is set again \(first on line 1\); keep one"):
        read_env_file(path)


def test_a_file_others_may_read_is_refused_and_the_group_warned(tmp_path: Path) -> None:
    """Readable by others: refused with the chmod that fixes it; by the group: a warning."""
    world = _write(tmp_path / "w.env", "A=1\n", 0o644)
    with pytest.raises(EnvFileError) as exc:
        read_env_file(world)
    assert str(exc.value) == (f"{world}: readable or writable by others (mode 644), and it "
                              f"holds secrets; run chmod 600 {world}")
    group = read_env_file(_write(tmp_path / "g.env", "A=1\n", 0o640))
    assert group.values == {"A": "1"}
    assert group.warnings == (f"{tmp_path / 'g.env'}: its group may read or write it (mode "
                              f"640); chmod 600 {tmp_path / 'g.env'} keeps the secrets to you",)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    """A file that is not there is said so, by name."""
    with pytest.raises(EnvFileError, match=r"^/\S+/nope\.env: no such file$"):
        read_env_file(str(tmp_path / "nope.env"))
