"""The modules: block and /probe's target: relay templates validated at load, presets as
modules, and HOST:PORT read the way a relay's host and port are."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import (
    AuthMechanism,
    ModuleConfig,
    TLSMode,
    find_module,
    parse_config,
    parse_target,
    relay_for_target,
)

RELAYS = "relays: [{name: relay, host: smtp.example.com}]\n"


def test_module_takes_relay_settings_and_secrets_from_env_and_files(tmp_path: Path) -> None:
    """A module holds relay settings with secrets from the environment or a file, like a
    relay's, and nothing of the secret shows in the config's text form."""
    (tmp_path / "key").write_text("file-secret-8812\n")
    config = parse_config(RELAYS + f"""
modules:
  sendgrid_auth:
    preset: sendgrid
    timeout: 8s
    rcpt_check: postmaster@example.com
    auth: {{username: apikey, password_env: SG_KEY}}
  filed:
    tls: implicit
    auth: {{mechanism: login, username: probe, password_file: {tmp_path / 'key'}}}
""", environ={"SG_KEY": "env-secret-4471"})
    sendgrid, filed = config.modules
    assert sendgrid.name == "sendgrid_auth" and sendgrid.preset == "sendgrid"
    assert sendgrid.timeout == 8.0 and sendgrid.rcpt_check == "postmaster@example.com"
    assert sendgrid.auth.password is not None
    assert sendgrid.auth.password.reveal() == "env-secret-4471"
    assert filed.auth.mechanism is AuthMechanism.LOGIN and filed.tls is TLSMode.IMPLICIT
    assert filed.auth.password is not None and filed.auth.password.reveal() == "file-secret-8812"
    assert "env-secret-4471" not in repr(config) and "file-secret-8812" not in repr(config)


def test_modules_do_not_take_the_defaults_block() -> None:
    """defaults: (credentials included) is for relays only: a module starts from the built-in
    defaults, so no relay's credentials reach a target /probe is asked for."""
    config = parse_config("""
defaults:
  timeout: 5s
  auth: {username: probe, password_env: PW}
relays: [{name: relay, host: smtp.example.com}]
modules:
  bare: {}
""", environ={"PW": "pw"})
    (bare,) = config.modules
    assert bare.timeout == 15.0 and bare.auth.mechanism is AuthMechanism.NONE
    assert config.relays[0].auth.mechanism is AuthMechanism.PLAIN


def test_interval_in_a_module_is_a_warning() -> None:
    """interval and egress_addresses mean nothing to /probe: the file loads, with a warning
    that says so."""
    config = parse_config(RELAYS + "modules:\n  m: {interval: 1m, egress_addresses: [192.0.2.1]}\n")
    assert [str(w) for w in config.warnings] == [
        "modules.m.interval: ignored by /probe: Prometheus's scrape_interval sets how often it "
        "runs; remove it",
        "modules.m.egress_addresses: ignored by /probe, which checks no DNS records; remove it",
    ]


def test_find_module_prefers_configured_then_presets() -> None:
    """A configured module wins over a preset of the same name; any preset name, SES regions
    included, is a module without credentials; anything else is unknown."""
    config = parse_config(RELAYS + "modules:\n  gmail: {timeout: 3s}\n")
    configured = find_module(config, "gmail")
    assert configured is not None and configured.timeout == 3.0 and configured.preset is None
    preset = find_module(config, "ses-eu-west-1")
    assert preset is not None and preset.preset == "ses-eu-west-1"
    assert preset.auth.mechanism is AuthMechanism.NONE
    assert find_module(config, "nope") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("smtp.example.com:587", ("smtp.example.com", 587)),
    ("192.0.2.1:25", ("192.0.2.1", 25)),
    ("[2001:db8::25]:465", ("2001:db8::25", 465)),
    ("mx.example.com.:2525", ("mx.example.com.", 2525)),
])
def test_targets_that_parse(text: str, expected: tuple[str, int]) -> None:
    """Names, IPv4 and bracketed IPv6 addresses with a port are targets."""
    assert parse_target(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "target is empty; give HOST:PORT, e.g. smtp.example.com:587"),
    ("smtp.example.com", "target has no port; give HOST:PORT, e.g. smtp.example.com:587"),
    ("smtp.example.com:", "target port '' is not a number; use 1 to 65535"),
    ("smtp.example.com:smtp", "target port 'smtp' is not a number; use 1 to 65535"),
    ("smtp.example.com:65536", "target: 65536 is out of range; use a port from 1 to 65535"),
    ("smtp_relay!:25",
     'target: "smtp_relay!" is not a hostname or IP address; use e.g. smtp.example.com'),
    ("2001:db8::25:25", "target: put an IPv6 address in brackets, e.g. [2001:db8::25]:587"),
    ("user:pw@smtp.example.com:587",
     "target carries credentials; /probe takes them only from the module's auth"),
    ("smtp://smtp.example.com:587",
     "target is not HOST:PORT; give no scheme or path, e.g. smtp.example.com:587"),
])
def test_bad_targets_say_what_to_write(text: str, message: str) -> None:
    """Each bad target is refused with one line naming the fix."""
    with pytest.raises(ValueError) as caught:
        parse_target(text)
    assert str(caught.value) == message


def test_tls_mode_follows_the_targets_port() -> None:
    """Without tls: in the module, the mode is the preset's for the target's port, else
    implicit on 465 and 2465 and STARTTLS elsewhere; a module's tls: wins."""
    config = parse_config(RELAYS + "modules:\n  sg: {preset: sendgrid}\n"
                                   "  forced: {tls: implicit}\n  bare: {}\n")
    sg, forced, bare = config.modules

    def tls(module: ModuleConfig, port: int) -> TLSMode:
        return relay_for_target(module, "h.example", port, timeout=5).tls

    assert tls(sg, 465) is TLSMode.IMPLICIT and tls(sg, 2525) is TLSMode.STARTTLS
    assert tls(bare, 2465) is TLSMode.IMPLICIT and tls(bare, 25) is TLSMode.STARTTLS
    assert tls(forced, 587) is TLSMode.IMPLICIT
    relay = relay_for_target(sg, "h.example", 587, timeout=4.5)
    assert (relay.host, relay.port, relay.timeout, relay.preset) == ("h.example", 587, 4.5,
                                                                     "sendgrid")


def test_config_example_modules_block_loads_uncommented() -> None:
    """The commented modules: example in config.example.yaml is a valid block once
    uncommented, so the example cannot rot."""
    text = (Path(__file__).resolve().parents[2] / "config.example.yaml").read_text()
    lines = text[text.index("\n# modules:\n") + 1:].splitlines()
    block = "\n".join(line[2:] for line in lines if line.startswith("# "))
    config = parse_config(RELAYS + block, offline=True, environ={})
    assert [m.name for m in config.modules] == ["submission", "sendgrid_key"]
    assert config.modules[0].timeout == 10.0 and config.modules[1].preset == "sendgrid"
    assert config.modules[0].auth.mechanism is AuthMechanism.PLAIN
