"""Process, port and path helpers for the test Dovecot: process groups, free ports, greetings."""

from __future__ import annotations

import contextlib
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = ["alive", "free_ports", "greets", "group_pids", "make_traversable"]


def make_traversable(root: Path) -> None:
    """Give ``root`` and its ancestors the search bit for others, so Dovecot's users reach it."""
    for path in (root, *root.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def free_ports(host: str, fixed: Mapping[str, int]) -> dict[str, int]:
    """Keep the given ports; pick free ones for those that are 0 (all held open at once)."""
    with contextlib.ExitStack() as stack:
        ports = {}
        for name, port in fixed.items():
            if port:
                ports[name] = port
                continue
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports[name] = sock.getsockname()[1]
        return ports


def greets(host: str, port: int, greeting: bytes) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.settimeout(1.0)
            return sock.recv(256).startswith(greeting)
    except OSError:
        return False


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def alive(pid: int, pgid: int) -> bool:
    """True while ``pid`` exists in process group ``pgid`` (so not a reused PID), not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and int(fields[2]) == pgid
