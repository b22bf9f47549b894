"""The ``tls_server_config`` of the web config file: a server SSLContext with its certificate,
versions, cipher suites, curve and client certificate checks; every problem is reported."""

from __future__ import annotations

import os
import ssl
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter.config.reader import Problems, as_mapping, check_keys, join
from exporter.config.values import describe, kind

__all__ = ["TLSServerConfig", "parse_tls"]

_TLS_KEYS = (
    "cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type", "client_ca_file",
    "client_allowed_sans", "min_version", "max_version", "cipher_suites",
    "prefer_server_cipher_suites", "curve_preferences",
)
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's names of the TLS 1.2 suites crypto/tls offers, and OpenSSL's names for them.
_CIPHERS = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
# TLS 1.3 suites are always on, in Go as in OpenSSL; listing them changes nothing.
_TLS13_CIPHERS = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                  "TLS_CHACHA20_POLY1305_SHA256")
_CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
           "X25519": "X25519"}



@dataclass(frozen=True, slots=True)
class TLSServerConfig:
    """A ready server SSLContext and the client certificate SANs allowed (empty: any)."""

    context: ssl.SSLContext
    client_allowed_sans: frozenset[str] = frozenset()
    files: tuple[str, ...] = ()



def _strings(value: object, path: str, problems: Problems) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.error(path, f"expected a list of strings, got {describe(value)}")
        return []
    return list(value)


def _text(section: Mapping[str, object], key: str, path: str, problems: Problems,
          *, secret: bool = False) -> str:
    value = section.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        shown = kind(value) if secret else describe(value)
        problems.error(join(path, key), f"expected a string, got {shown}")
        return ""
    return value


def parse_tls(value: object, base: str, problems: Problems,
              *, offline: bool = False) -> TLSServerConfig | None:
    """The TLS section, or None when it enables nothing or has problems: every one of them is
    reported, a bad version as well as missing files. ``offline`` (``check-config
    --offline``): a certificate, key or client CA file missing here is a note."""
    before = len(problems.of("error")) + len(problems.of("note"))
    path = "tls_server_config"
    section = as_mapping(value, path, problems, "TLS settings")
    check_keys(section, path, _TLS_KEYS, problems)
    at = {key: join(path, key) for key in _TLS_KEYS}
    text = {key: _text(section, key, path, problems, secret=key == "key")
            for key in ("cert", "key", "client_ca", "cert_file", "key_file", "client_auth_type",
                        "client_ca_file", "min_version", "max_version")}
    enabled = any(text[k] for k in ("cert", "key", "client_ca", "cert_file", "key_file",
                                    "client_ca_file", "client_auth_type"))
    if not enabled:
        for key in section:
            if key in _TLS_KEYS and section[key] is not None:
                problems.error(at[key], "has no effect without cert_file and key_file; "
                               "add them or remove this key")
        return None
    pairs = (("cert", "cert_file"), ("key", "key_file"), ("client_ca", "client_ca_file"))
    for inline, file in pairs:
        if text[inline] and text[file]:
            problems.error(at[inline], f"set either {inline} or {file}, not both")
    if not text["cert"] and not text["cert_file"]:
        problems.error(at["cert_file"], "missing; TLS needs the server certificate (cert_file)")
    if not text["key"] and not text["key_file"]:
        problems.error(at["key_file"], "missing; TLS needs the certificate's key (key_file)")
    files = tuple(
        os.path.join(base, text[key]) for key in ("cert_file", "key_file", "client_ca_file")
        if text[key]
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, text["min_version"] or "TLS12", text["max_version"] or "TLS13", at, problems)
    _ciphers(ctx, section, at, problems)
    auth_type = text["client_auth_type"] or "NoClientCert"
    _client_auth(ctx, auth_type, text, base, at, problems, offline)
    sans = _strings(section.get("client_allowed_sans"), at["client_allowed_sans"], problems)
    if section.get("client_allowed_sans") is not None and auth_type != "RequireAndVerifyClientCert":
        problems.error(at["client_allowed_sans"],
                       "needs client_auth_type: RequireAndVerifyClientCert, so every client "
                       "presents a certificate to match")
    _load_chain(ctx, text, base, at, problems, offline)
    if len(problems.of("error")) + len(problems.of("note")) > before:
        return None
    return TLSServerConfig(context=ctx, client_allowed_sans=frozenset(sans), files=files)


def _versions(ctx: ssl.SSLContext, low: str, high: str, at: dict[str, str],
              problems: Problems) -> None:
    names = ", ".join(_VERSIONS)
    for key, name in (("min_version", low), ("max_version", high)):
        if name not in _VERSIONS:
            problems.error(at[key], f"{describe(name)} is not a TLS version; use one of {names}")
    if low not in _VERSIONS or high not in _VERSIONS:
        return
    if _VERSIONS[low] > _VERSIONS[high]:
        problems.error(at["min_version"], f"{low} is above max_version {high}; lower it")
        return
    if _VERSIONS[low] < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL refuses TLS < 1.2 at its default level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = _VERSIONS[low]
        ctx.maximum_version = _VERSIONS[high]


def _ciphers(ctx: ssl.SSLContext, section: Mapping[str, object], at: dict[str, str],
             problems: Problems) -> None:
    suites = _strings(section.get("cipher_suites"), at["cipher_suites"], problems)
    chosen = []
    unknown = False
    for name in suites:
        if name in _CIPHERS:
            chosen.append(_CIPHERS[name])
        elif name not in _TLS13_CIPHERS:
            unknown = True
            problems.error(at["cipher_suites"], f"unknown cipher suite {describe(name)}; use "
                           f"Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    if chosen and not unknown:
        ctx.set_ciphers(":".join(chosen))
    prefer = section.get("prefer_server_cipher_suites", True)
    if prefer is None:
        prefer = True
    if not isinstance(prefer, bool):
        problems.error(at["prefer_server_cipher_suites"],
                       f"expected true or false, got {describe(prefer)}")
    elif prefer:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    curves = _strings(section.get("curve_preferences"), at["curve_preferences"], problems)
    for name in curves:
        if name not in _CURVES:
            problems.error(at["curve_preferences"], f"unknown curve {describe(name)}; use one "
                           f"of {', '.join(_CURVES)}")
    if len(curves) > 1:
        problems.error(at["curve_preferences"], "this exporter can pin one curve only "
                       "(Python's ssl module); list one, or remove the key for OpenSSL's defaults")
    elif curves and curves[0] in _CURVES:
        ctx.set_ecdh_curve(_CURVES[curves[0]])


def _client_auth(ctx: ssl.SSLContext, auth_type: str, text: dict[str, str], base: str,
                 at: dict[str, str], problems: Problems, offline: bool) -> None:
    where = at["client_auth_type"]
    if auth_type in _UNVERIFIED_CLIENT_AUTH:
        problems.error(where, f"{auth_type} accepts certificates nobody verified, which "
                       "this exporter does not do; use RequireAndVerifyClientCert with "
                       "client_ca_file")
        return
    if auth_type not in _CLIENT_AUTH:
        problems.error(where, f"{describe(auth_type)} is not a client auth type; use "
                       f"{', '.join(_CLIENT_AUTH)}")
        return
    has_ca = bool(text["client_ca_file"] or text["client_ca"])
    if auth_type == "NoClientCert":
        if has_ca:
            problems.error(at["client_ca_file"], "client CAs are set but client_auth_type is "
                           "NoClientCert; set client_auth_type: RequireAndVerifyClientCert")
        return
    if not has_ca:
        problems.error(at["client_ca_file"], f"missing; {auth_type} verifies client "
                       "certificates against it")
        return
    ca_path = os.path.join(base, text["client_ca_file"])
    if offline and text["client_ca_file"] and _absent(ca_path, at["client_ca_file"], problems):
        return
    try:
        if text["client_ca_file"]:
            ctx.load_verify_locations(cafile=os.path.join(base, text["client_ca_file"]))
        else:
            ctx.load_verify_locations(cadata=text["client_ca"])
    except (OSError, ssl.SSLError, ValueError) as exc:
        key = "client_ca_file" if text["client_ca_file"] else "client_ca"
        problems.error(at[key], f"cannot load the client CA: {_why(exc)}; give a PEM file "
                       "of CA certificates")
        return
    ctx.verify_mode = _CLIENT_AUTH[auth_type]


def _load_chain(ctx: ssl.SSLContext, text: dict[str, str], base: str, at: dict[str, str],
                problems: Problems, offline: bool) -> None:
    """The certificate and key, from files or inline PEM (written to a private temp dir); each
    file missing is reported, whatever else is wrong."""
    pairs = (("cert", "cert_file"), ("key", "key_file"))
    missing = False
    for _, file in pairs:
        given = os.path.join(base, text[file])
        if text[file] and not os.path.isfile(given):
            if offline:
                _absent(given, at[file], problems)
            else:
                problems.error(at[file], f"{given}: no such file")
            missing = True
    if missing or any(bool(text[inline]) == bool(text[file]) for inline, file in pairs):
        return  # a file missing, or a part missing or given twice: each reported
    with tempfile.TemporaryDirectory(prefix="smtp-canary-web-") as tmp:
        paths = {}
        for inline, file in pairs:
            if text[file]:
                paths[file] = os.path.join(base, text[file])
            else:
                paths[file] = os.path.join(tmp, inline + ".pem")
                Path(paths[file]).write_text(text[inline], encoding="utf-8")
        try:
            ctx.load_cert_chain(paths["cert_file"], paths["key_file"])
        except (OSError, ssl.SSLError) as exc:
            where = at["cert_file"] if text["cert_file"] else at["cert"]
            problems.error(where, f"cannot load the certificate and key: {_why(exc)}; check "
                           "that both are PEM and the key belongs to the certificate")


def _absent(path: str, where: str, problems: Problems) -> bool:
    """Offline, a file missing here is a note: it must exist where the exporter runs."""
    if os.path.isfile(path):
        return False
    problems.note(where, f"{path} does not exist here; it must exist where the exporter runs")
    return True


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        if not exc.reason or exc.reason == "PEM_LIB":
            return "not readable PEM"
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
