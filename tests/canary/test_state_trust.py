"""The canary state file is trusted only when it is this user's and no one else may write it,
and the state directory only when no one else can plant a file in it (issue #18)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

import pytest
import yaml

from exporter.app import App
from exporter.config import ConfigError, load_config
from tests.conftest import ENV
from tests.helpers import http, value
from tests.servers.scripted import refused_port
from tests.test_cli import run_cli

NOBODY = 65534
PLANTED = 5000
RB = {"relay": "relay", "mailbox": "box"}


def _config(tmp_path: Path, state: Path) -> Path:
    doc = {
        "instance": "trust", "state_dir": str(state),
        "mailboxes": [{"name": "box", "host": "127.0.0.1", "port": refused_port(),
                       "tls": "implicit", "trusted_authserv_ids": ["mx"],
                       "auth": {"username": "u", "password_env": "RELAY_PASSWORD"}}],
        "relays": [{"name": "relay", "host": "127.0.0.1", "port": refused_port(),
                    "tls": "none", "interval": "1h", "timeout": "1s",
                    "canary": {"from": "c@example.test", "interval": "1h", "timeout": "10m",
                               "to": [{"address": "a@example.test", "mailbox": "box"}]}}],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _plant(state: Path, *, owner: int, group: int, mode: int) -> bytes:
    """A state file of 5,000 canaries long past their deadline: each would count as lost."""
    state.mkdir(mode=0o700, exist_ok=True)
    records = [{"token": f"trust-planted{i:05d}", "relay": "relay", "mailbox": "box",
                "address": "a@example.test", "sent_at": 1000.0, "deadline": 2000.0}
               for i in range(PLANTED)]
    data = json.dumps({"version": 1, "canaries": records}).encode()
    path = state / "canaries-trust.json"
    path.write_bytes(data)
    os.chown(path, owner, group)
    os.chmod(path, mode)
    return data


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a file of another user needs root")
@pytest.mark.parametrize(("owner", "group", "mode", "trusted"), [
    (NOBODY, NOBODY, 0o600, False),
    (0, 0, 0o666, False),
    (0, NOBODY, 0o620, False),
    (0, 0, 0o600, True),
    (0, 0, 0o660, True),
], ids=["other-user", "world-writable", "writable-by-another-group", "own-0600",
        "own-group-0660"])
async def test_planted_state_file_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, owner: int, group: int, mode: int,
    trusted: bool,
) -> None:
    """A state file of 5,000 canaries owned by another user, or writable by others or by
    another group, is not loaded: no canary counts as lost, the refusal is counted and logged
    with the fix, and the file is kept aside, unchanged. This user's own file is loaded, also
    when its own group may write it (Kubernetes' fsGroup makes a volume's files so)."""
    caplog.set_level(logging.INFO)
    state = tmp_path / "state"
    data = _plant(state, owner=owner, group=group, mode=mode)
    app = App(str(_config(tmp_path, state)), listen=("127.0.0.1", 0), environ=ENV)
    app.canaries.first_spread = 1e9
    await app.start()
    try:
        assert app.web is not None
        await asyncio.sleep(1.6)  # the expiry loop runs every second
        text = (await asyncio.to_thread(http, f"http://127.0.0.1:{app.web.port}/metrics"))[1]
    finally:
        await app.stop()
    refused = [r for r in caplog.records
               if r.getMessage() == "canary state file refused, starting empty"]
    aside = state / "canaries-trust.json.refused"
    if trusted:
        assert value(text, "smtp_canary_lost_total", **RB) == PLANTED
        assert value(text, "smtp_canary_state_refused_total") == 0
        assert not refused and not aside.exists()
        return
    assert value(text, "smtp_canary_lost_total", **RB) == 0
    assert value(text, "smtp_canary_in_flight", **RB) == 0
    assert value(text, "smtp_canary_state_refused_total") == 1
    assert len(refused) == 1
    record = refused[0]
    problem = str(getattr(record, "problem", ""))
    assert ("owned by uid 65534" in problem if owner else "writable by group or others"
            in problem), problem
    assert "remove it" in str(getattr(record, "fix", ""))
    assert aside.read_bytes() == data
    assert (aside.stat().st_uid, stat.S_IMODE(aside.stat().st_mode)) == (owner, mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another user needs root")
@pytest.mark.parametrize(("owner", "group", "mode", "allowed"), [
    (0, 0, 0o777, False),
    (0, NOBODY, 0o770, False),
    (NOBODY, NOBODY, 0o1777, False),
    (0, 0, 0o1777, True),
    (0, 0, 0o755, True),
    (0, 0, 0o2770, True),
], ids=["world-writable", "writable-by-another-group", "sticky-of-another-user", "sticky-own",
        "0755", "own-group-fsgroup-2770"])
def test_state_dir_others_can_write_is_refused(
    tmp_path: Path, owner: int, group: int, mode: int, allowed: bool,
) -> None:
    """A state directory that others or another group may write to is a config error naming
    state_dir and the fix (chmod 700), unless it is sticky and this user's; check-config says
    so in one line. Writable by this user's own group (as Kubernetes' fsGroup leaves a
    volume) is allowed."""
    state = tmp_path / "state dir"
    state.mkdir()
    os.chown(state, owner, group)
    os.chmod(state, mode)
    path = _config(tmp_path, state)
    if allowed:
        assert load_config(path, environ=ENV).state_dir == str(state)
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    [problem] = caught.value.problems
    assert str(problem).startswith(f"state_dir: {state} is writable by")
    assert f"chmod 700 '{state}'" in str(problem)
    out = run_cli("check-config", "--config.file", str(path))
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: state_dir: "), out.stderr
    assert "chmod 700" in errors[0]


async def test_state_dir_is_created_for_this_user_only(tmp_path: Path) -> None:
    """A state directory that does not exist yet is created mode 700 at the first write."""
    state = tmp_path / "new" / "state"
    app = App(str(_config(tmp_path, state)), listen=("127.0.0.1", 0), environ=ENV)
    app.canaries.first_spread = 1e9
    await app.start()
    try:
        assert app.config is not None
        await app.canaries.send_once(app.config.relays[0])
    finally:
        await app.stop()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / "canaries-trust.json").exists()
