"""The auth block: mechanism, username, secrets from env or file, and XOAUTH2 via OAuth2."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from exporter.config.model import NO_AUTH, AuthConfig, AuthMechanism, OAuth2Config
from exporter.config.reader import Context, Problems, Reader, as_mapping, check_keys
from exporter.config.secret import Secret, SecretError, secret_from_env, secret_from_file
from exporter.config.values import choice, is_ip, resolve_file, to_str, to_token_url

__all__ = ["parse_auth"]

_PASSWORD_KEYS = ("password_env", "password_file")
_TOKEN_KEYS = ("token_env", "token_file", "oauth2")
_AUTH_KEYS = ("mechanism", "username", *_PASSWORD_KEYS, *_TOKEN_KEYS)
_OAUTH2_KEYS = (
    "token_url",
    "client_id",
    "client_secret_env",
    "client_secret_file",
    "refresh_token_env",
    "refresh_token_file",
    "scope",
    "grant_type",
)
_GRANTS = ("refresh_token", "client_credentials")
_PLACEHOLDER = "unread"  # stands in for a secret an offline check could not read
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INLINE = "inline secrets are not allowed; use {0}_env or {0}_file"
_AUTH_SPECIAL = {key: _INLINE.format(key) for key in ("password", "token")}
_OAUTH2_SPECIAL = {key: _INLINE.format(key) for key in ("client_secret", "refresh_token")}


def parse_auth(
    value: object,
    path: str,
    context: Context,
    problems: Problems,
    *,
    password_mechanism: AuthMechanism = AuthMechanism.PLAIN,
) -> AuthConfig:
    """The auth block at ``path``; secrets are read now, so a missing one is a load error.

    Without a mechanism key, a username or password means ``password_mechanism``.
    """
    block = as_mapping(value, path, problems, "auth settings")
    check_keys(block, path, _AUTH_KEYS, problems, _AUTH_SPECIAL)
    reader = Reader(((block, path),), problems)
    mechanism = reader.get("mechanism", _to_mechanism, None) or _default_mechanism(
        reader, password_mechanism
    )
    if mechanism == AuthMechanism.NONE:
        _check_no_credentials(reader)
        return NO_AUTH
    username = reader.get("username", to_str, None)
    if not reader.is_set("username"):
        problems.error(
            reader.at("username"), f"missing; {mechanism} authentication needs a username"
        )
    if mechanism == AuthMechanism.XOAUTH2:
        return _xoauth2_auth(reader, username, context)
    _reject_keys(reader, _TOKEN_KEYS, mechanism)
    given, password = _secret(reader, "password", context)
    if not given:
        problems.error(
            path, f"{mechanism} authentication needs a password; set password_env or password_file"
        )
    return AuthConfig(mechanism, username, password=password)


def _secret(reader: Reader, stem: str, context: Context) -> tuple[bool, Secret | None]:
    """Read ``<stem>_env`` or ``<stem>_file``; return whether one was given, and the secret.

    An inline ``<stem>`` key counts as given: it has its own error already.
    """
    env_key, file_key = f"{stem}_env", f"{stem}_file"
    env_name = reader.get(env_key, _to_env_name, None)
    file_name = reader.get(file_key, to_str, None)
    given = any(reader.is_set(key) for key in (env_key, file_key, stem))
    if env_name is not None and file_name is not None:
        reader.problems.error(reader.path, f"set only one of {env_key} and {file_key}")
        return given, None
    if env_name is None and file_name is None:
        return given, None
    key = env_key if env_name is not None else file_key
    try:
        if env_name is not None:
            secret = secret_from_env(env_name, environ=context.environ)
        else:
            secret = secret_from_file(resolve_file(str(file_name), context.base_dir))
    except SecretError as exc:
        if not context.offline:
            reader.problems.error(reader.at(key), str(exc))
            return given, None
        reader.problems.note(reader.at(key), exc.note)
        return given, Secret(_PLACEHOLDER, source=f"unread:{key}")
    _warn_whitespace(secret, reader.at(key), reader.problems)
    return given, secret


def _to_env_name(value: object) -> str:
    """An environment variable name; the value is never echoed, as it may be a pasted secret."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(
            "not an environment variable name; give the variable's name "
            "(letters, digits and _), not the secret"
        )
    return value


def _warn_whitespace(secret: Secret, path: str, problems: Problems) -> None:
    value = secret.reveal()
    ends = [end for end, text in (("starts", value[:1]), ("ends", value[-1:])) if text.isspace()]
    if ends:
        where = secret.source.replace(":", " ", 1)
        problems.warn(
            path,
            f"the secret from {where} {' and '.join(ends)} with whitespace; "
            "pasted secrets often do \N{EM DASH} remove it",
        )


def _default_mechanism(reader: Reader, password_mechanism: AuthMechanism) -> AuthMechanism:
    """xoauth2 for a token source, ``password_mechanism`` for a username or password, else none."""
    if any(reader.is_set(key) for key in _TOKEN_KEYS):
        return AuthMechanism.XOAUTH2
    if any(reader.is_set(key) for key in ("username", *_PASSWORD_KEYS)):
        return password_mechanism
    return AuthMechanism.NONE


def _to_mechanism(value: object) -> AuthMechanism:
    return AuthMechanism(choice(value, tuple(AuthMechanism), "supported"))


def _reject_keys(reader: Reader, keys: Iterable[str], mechanism: AuthMechanism) -> None:
    for key in keys:
        if reader.is_set(key):
            reader.problems.error(reader.at(key), f"not used with mechanism {mechanism}; remove it")


def _check_no_credentials(reader: Reader) -> None:
    given = [key for key in ("username", *_PASSWORD_KEYS, *_TOKEN_KEYS) if reader.is_set(key)]
    if given:
        verb = "is" if len(given) == 1 else "are"
        reader.problems.error(
            reader.at("mechanism"),
            f"none takes no credentials, but {', '.join(given)} {verb} set; "
            "remove them or choose a mechanism",
        )


def _xoauth2_auth(reader: Reader, username: str | None, context: Context) -> AuthConfig:
    error = reader.problems.error
    _reject_keys(reader, _PASSWORD_KEYS, AuthMechanism.XOAUTH2)
    given, token = _secret(reader, "token", context)
    found = reader.find("oauth2")
    oauth2 = None
    if found is not None and found[0] is not None:
        oauth2 = _parse_oauth2(found[0], found[1], reader.problems, context)
    if not given and oauth2 is None:
        error(reader.path, "xoauth2 needs a token; set token_env, token_file or oauth2")
    elif given and oauth2 is not None:
        error(reader.path, "set only one of token_env, token_file and oauth2")
    return AuthConfig(AuthMechanism.XOAUTH2, username, token=token, oauth2=oauth2)


def _parse_oauth2(value: object, path: str, problems: Problems, context: Context) -> OAuth2Config:
    block = as_mapping(value, path, problems, "OAuth2 settings")
    check_keys(block, path, _OAUTH2_KEYS, problems, _OAUTH2_SPECIAL)
    reader = Reader(((block, path),), problems)
    token_url = reader.get("token_url", to_token_url, "")
    _check_token_url(reader, token_url)
    client_id = reader.get("client_id", to_str, "")
    if not reader.is_set("client_id"):
        problems.error(reader.at("client_id"), "missing; set the OAuth2 client id")
    has_secret, client_secret = _secret(reader, "client_secret", context)
    has_refresh, refresh_token = _secret(reader, "refresh_token", context)
    default_grant = "refresh_token" if has_refresh else "client_credentials"
    grant = reader.get("grant_type", _to_grant, default_grant)
    if grant == "refresh_token" and not has_refresh:
        problems.error(path, "grant refresh_token needs refresh_token_env or refresh_token_file")
    if grant == "client_credentials" and not has_secret:
        problems.error(
            path, "grant client_credentials needs client_secret_env or client_secret_file"
        )
    if grant == "client_credentials":
        for key in ("refresh_token_env", "refresh_token_file"):
            if reader.is_set(key):
                problems.error(reader.at(key), "not used with grant client_credentials; remove it")
    scope = reader.get("scope", to_str, None)
    return OAuth2Config(token_url, client_id, client_secret, refresh_token, scope, grant)


def _to_grant(value: object) -> str:
    return choice(value, _GRANTS, "a grant type")


def _check_token_url(reader: Reader, url: str) -> None:
    if not reader.is_set("token_url"):
        reader.problems.error(reader.at("token_url"), "missing; set the provider's token endpoint")
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost" or (is_ip(host) and ipaddress.ip_address(host).is_loopback)
    if parts.scheme == "http" and not loopback:
        reader.problems.warn(
            reader.at("token_url"),
            "plain http to a remote host exposes the client secret and tokens; use https",
        )
