"""The mailboxes list: IMAP mailboxes that canaries are read back from."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import partial

from exporter.config.auth import parse_auth
from exporter.config.model import AuthConfig, AuthMechanism, MailboxConfig, RelayConfig
from exporter.config.reader import Context, Problems, Reader, as_mapping, check_keys, join
from exporter.config.transport import (
    check_ignored_tls_keys,
    check_ports,
    check_verification,
    read_name,
)
from exporter.config.values import (
    choice,
    describe,
    kind,
    to_bool,
    to_ca_file,
    to_host,
    to_long_duration,
    to_port,
    to_str,
    to_timeout,
    to_tls_mode,
    to_tls_version,
)
from exporter.model import TLSMode

__all__ = ["parse_mailboxes", "warn_unused_mailboxes"]

_MAILBOX_KEYS = tuple(MailboxConfig.__dataclass_fields__)
_MAILBOX_SPECIAL = {
    "tls_server_name": "not supported for mailboxes; the certificate must name host",
}
_IMPLICIT_PORTS = frozenset({993})
_STARTTLS_PORTS = frozenset({143})
_PORT_FOR_MODE = {TLSMode.IMPLICIT: 993, TLSMode.STARTTLS: 143, TLSMode.NONE: 143}
_MECHANISMS = ("login", "plain", "xoauth2")
_NEED_MECHANISM = "IMAP canary mailboxes need login, plain or xoauth2"
_DEFAULT_FOLDERS = (("inbox", "INBOX"),)
_LABEL = re.compile(r"[a-z][a-z0-9_-]*")
_FOLDERS_HELP = "e.g. {inbox: INBOX, spam: Junk}"
_NO_AUTHSERV_IDS = (
    "no Authentication-Results header will be trusted, so every verdict reads none; "
    "list the receiver's authserv-id, e.g. mx.google.com"
)


def parse_mailboxes(
    value: object, context: Context, problems: Problems, seen: dict[str, str]
) -> tuple[MailboxConfig, ...]:
    """Every mailbox that could be built; ``seen`` gets each valid name and its path, in order."""
    if value is None or value == []:
        return ()
    if not isinstance(value, list):
        problems.error("mailboxes", f"expected a list of mailboxes, got {describe(value)}")
        return ()
    mailboxes = [
        _parse_mailbox(item, f"mailboxes[{index}]", seen, context, problems)
        for index, item in enumerate(value)
    ]
    return tuple(mailbox for mailbox in mailboxes if mailbox is not None)


def warn_unused_mailboxes(
    seen: Mapping[str, str], relays: Iterable[RelayConfig], problems: Problems
) -> None:
    """A mailbox that no relay's canary sends to would only ever be watched: say so."""
    used = {target.mailbox for relay in relays if relay.canary for target in relay.canary.to}
    for name, path in seen.items():
        if name not in used:
            problems.warn(
                path, "no relay sends canaries here; add it to a relay's canary.to or remove it"
            )


def _parse_mailbox(
    value: object, path: str, seen: dict[str, str], context: Context, problems: Problems
) -> MailboxConfig | None:
    if not isinstance(value, Mapping):
        problems.error(path, f"expected a mapping of mailbox settings, got {kind(value)}")
        return None
    raw = as_mapping(value, path, problems, "mailbox settings")
    check_keys(raw, path, _MAILBOX_KEYS, problems, _MAILBOX_SPECIAL)
    reader = Reader(((raw, path),), problems)
    name = read_name(reader, seen, "mailbox")
    host = reader.get("host", to_host, None)
    if host is None and not reader.is_set("host"):
        problems.error(reader.at("host"), "missing; set the IMAP server, e.g. imap.gmail.com")
    tls = reader.get("tls", to_tls_mode, None)
    port = reader.get("port", to_port, None) or _PORT_FOR_MODE[tls or TLSMode.IMPLICIT]
    tls = tls or (TLSMode.STARTTLS if port in _STARTTLS_PORTS else TLSMode.IMPLICIT)
    folders = _parse_folders(raw.get("folders"), reader.at("folders"), problems)
    mailbox = MailboxConfig(
        name=name,
        host=host or "",
        port=port,
        tls=tls,
        tls_verify=reader.get("tls_verify", to_bool, True),
        ca_file=reader.get_file(
            "ca_file", partial(to_ca_file, base_dir=context.base_dir), None,
            offline=context.offline,
        ),
        tls_min_version=reader.get("tls_min_version", to_tls_version, "1.2"),
        auth=_parse_auth(raw.get("auth"), reader.at("auth"), context, problems),
        folders=folders,
        trusted_authserv_ids=_parse_authserv_ids(reader),
        idle=reader.get("idle", to_bool, True),
        poll_interval=reader.get(
            "poll_interval", partial(to_long_duration, what="poll_interval", minimum=1.0), 30.0
        ),
        timeout=reader.get("timeout", partial(to_timeout, example="30s"), 30.0),
        move_to=reader.get("move_to", _to_folder_name, None),
        allow_plaintext_auth=reader.get("allow_plaintext_auth", to_bool, False),
    )
    _check(mailbox, reader)
    return mailbox


def _check(mailbox: MailboxConfig, reader: Reader) -> None:
    """Checks across keys: port and TLS mode, plaintext credentials, verification, move_to."""
    check_ports(reader, mailbox.port, mailbox.tls, _IMPLICIT_PORTS, _STARTTLS_PORTS)
    if mailbox.tls == TLSMode.NONE:
        check_ignored_tls_keys(reader, ("tls_verify", "ca_file", "tls_min_version"))
        has_auth = mailbox.auth.mechanism != AuthMechanism.NONE
        if has_auth and not mailbox.allow_plaintext_auth:
            reader.problems.error(
                reader.at("auth"),
                "credentials would cross the network unencrypted; "
                "use tls: implicit or starttls, or set allow_plaintext_auth: true",
            )
    else:
        check_verification(reader, mailbox.tls_verify, mailbox.ca_file, "mailbox")
    if not mailbox.trusted_authserv_ids:
        reader.problems.warn(reader.at("trusted_authserv_ids"), _NO_AUTHSERV_IDS)
    watched = {_folder_key(name): label for label, name in mailbox.folders}
    if mailbox.move_to is not None and _folder_key(mailbox.move_to) in watched:
        label = watched[_folder_key(mailbox.move_to)]
        reader.problems.error(
            reader.at("move_to"),
            f'"{mailbox.move_to}" is watched as folders.{label}, so a moved canary would be '
            "found again; move canaries to a folder not listed under folders",
        )


def _parse_auth(value: object, path: str, context: Context, problems: Problems) -> AuthConfig:
    """The auth block as for relays, limited to login, plain and xoauth2 (login by default)."""
    rejected = False
    if isinstance(value, Mapping) and value.get("mechanism") is not None:
        mechanism = value["mechanism"]
        if mechanism not in _MECHANISMS:
            rejected = True
            where = join(path, "mechanism")
            if mechanism in ("cram-md5", "none"):
                problems.error(where, _NEED_MECHANISM)
            else:
                try:
                    choice(mechanism, _MECHANISMS, "supported")
                except ValueError as exc:
                    problems.error(where, str(exc))
            value = {key: item for key, item in value.items() if key != "mechanism"}
    auth = parse_auth(value, path, context, problems, password_mechanism=AuthMechanism.LOGIN)
    readable = value is None or isinstance(value, Mapping)
    if auth.mechanism == AuthMechanism.NONE and readable and not rejected:
        problems.error(
            path, f"missing; {_NEED_MECHANISM}: set username and password_env, or a token"
        )
    return auth


def _parse_folders(value: object, path: str, problems: Problems) -> tuple[tuple[str, str], ...]:
    """Label to IMAP folder name, in the order written; {inbox: INBOX} when not given."""
    if value is None:
        return _DEFAULT_FOLDERS
    if not isinstance(value, Mapping):
        problems.error(
            path, f"expected a mapping of label to folder name, {_FOLDERS_HELP}, got {kind(value)}"
        )
        return _DEFAULT_FOLDERS
    if not value:
        problems.error(path, f"empty; list at least one folder, {_FOLDERS_HELP}")
        return _DEFAULT_FOLDERS
    folders: list[tuple[str, str]] = []
    labels: dict[str, str] = {}
    for key, item in value.items():
        label = str(key)
        where = join(path, label)
        if not isinstance(key, str) or not _LABEL.fullmatch(key):
            problems.error(
                where,
                f'"{label}" is not a valid label; use lowercase letters, digits, "_" and "-", '
                "starting with a letter",
            )
        try:
            name = _to_folder_name(item)
        except ValueError as exc:
            problems.error(where, str(exc))
            continue
        if _folder_key(name) in labels:
            problems.error(
                where,
                f'folder "{name}" is also labelled {labels[_folder_key(name)]}; '
                "list each folder once",
            )
            continue
        labels[_folder_key(name)] = label
        folders.append((label, name))
    return tuple(folders) or _DEFAULT_FOLDERS


def _to_folder_name(value: object) -> str:
    name = to_str(value)
    if not name:
        raise ValueError("empty; give the IMAP folder's name, e.g. INBOX")
    return name


def _folder_key(name: str) -> str:
    """Folder names compare as written, except INBOX, which IMAP treats case-insensitively."""
    return "INBOX" if name.upper() == "INBOX" else name


def _parse_authserv_ids(reader: Reader) -> tuple[str, ...]:
    found = reader.find("trusted_authserv_ids")
    if found is None or found[0] is None:
        return ()
    value, path = found
    if not isinstance(value, list):
        reader.problems.error(
            path, f"expected a list of authserv-ids, e.g. [mx.google.com], got {describe(value)}"
        )
        return ()
    ids: list[str] = []
    for index, item in enumerate(value):
        if isinstance(item, str):
            ids.append(item)
        else:
            reader.problems.error(f"{path}[{index}]", f"expected a string, got {describe(item)}")
    return tuple(ids)
