"""Provider presets: host, port and TLS mode of well-known SMTP relays, with an auth hint."""

from __future__ import annotations

import re
from dataclasses import dataclass

from exporter.model import TLSMode

__all__ = ["PRESETS", "SES_PRESET_EXAMPLE", "Preset", "lookup_preset", "preset_names"]


@dataclass(frozen=True, slots=True)
class Preset:
    """A provider's relay: the usual port and TLS mode first, every other port it answers on."""

    name: str
    host: str
    port: int
    tls: TLSMode
    ports: tuple[tuple[int, TLSMode], ...]
    notes: str

    def tls_for(self, port: int) -> TLSMode | None:
        """Return the TLS mode the provider speaks on ``port``, or None if it does not list it."""
        return next((mode for known, mode in self.ports if known == port), None)

    def port_for(self, tls: TLSMode) -> int | None:
        """Return the first port the provider lists for ``tls``, or None."""
        if tls == self.tls:
            return self.port
        return next((port for port, mode in self.ports if mode == tls), None)


SES_PRESET_EXAMPLE = "ses-us-east-1"
_SES_NAME = re.compile(r"ses-(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)")


def _preset(
    name: str,
    host: str,
    notes: str,
    *,
    starttls: tuple[int, ...] = (587,),
    implicit: tuple[int, ...] = (),
) -> Preset:
    """Build a preset whose default is the first STARTTLS port."""
    ports = tuple((port, TLSMode.STARTTLS) for port in starttls)
    ports += tuple((port, TLSMode.IMPLICIT) for port in implicit)
    return Preset(name, host, starttls[0], TLSMode.STARTTLS, ports, notes)


_MAILGUN_NOTES = "per-domain SMTP credentials, e.g. postmaster@your-domain"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        _preset(
            "gmail",
            "smtp.gmail.com",
            "XOAUTH2 or an app password; the account password is refused",
            implicit=(465,),
        ),
        _preset(
            "google-relay",
            "smtp-relay.gmail.com",
            "IP allow-list or Workspace account credentials",
            starttls=(587, 25),
            implicit=(465,),
        ),
        _preset(
            "office365",
            "smtp.office365.com",
            "XOAUTH2, or SMTP AUTH enabled per mailbox (off by default in new tenants)",
        ),
        _preset("outlook", "smtp-mail.outlook.com", "Outlook.com account; XOAUTH2 preferred"),
        _preset("yahoo", "smtp.mail.yahoo.com", "needs an app password", implicit=(465,)),
        _preset(
            "sendgrid",
            "smtp.sendgrid.net",
            'username is literally "apikey", the password is the API key',
            starttls=(587, 25, 2525),
            implicit=(465,),
        ),
        _preset(
            "mailgun",
            "smtp.mailgun.org",
            _MAILGUN_NOTES,
            starttls=(587, 2525),
            implicit=(465,),
        ),
        _preset(
            "mailgun-eu",
            "smtp.eu.mailgun.org",
            _MAILGUN_NOTES,
            starttls=(587, 2525),
            implicit=(465,),
        ),
        _preset(
            "postmark",
            "smtp.postmarkapp.com",
            "username and password are both the Server API token",
            starttls=(587, 25, 2525),
            implicit=(465,),
        ),
        _preset(
            "mailjet",
            "in-v3.mailjet.com",
            "username is the API key, the password the secret key",
            implicit=(465,),
        ),
        _preset("brevo", "smtp-relay.brevo.com", "the password is an SMTP key"),
        _preset(
            "sparkpost",
            "smtp.sparkpostmail.com",
            'username is "SMTP_Injection", the password an API key',
            starttls=(587, 2525),
        ),
        _preset(
            "socketlabs",
            "smtp.socketlabs.com",
            "SMTP credentials from the server's settings",
            starttls=(587, 2525),
            implicit=(465,),
        ),
        _preset(
            "elastic-email",
            "smtp.elasticemail.com",
            "SMTP credentials from the account settings",
            starttls=(587, 2525),
        ),
        _preset(
            "resend",
            "smtp.resend.com",
            'username is "resend", the password an API key',
            starttls=(587, 2587),
            implicit=(465, 2465),
        ),
        _preset(
            "zeptomail",
            "smtp.zeptomail.com",
            'username is "emailapikey", the password an API token',
            implicit=(465,),
        ),
        _preset("zoho", "smtp.zoho.com", "Zoho Mail account or app password", implicit=(465,)),
    )
}


def _ses(region: str) -> Preset:
    """Amazon SES in one region."""
    return _preset(
        f"ses-{region}",
        f"email-smtp.{region}.amazonaws.com",
        "IAM SMTP credentials, not the AWS access keys; the sandbox delivers to verified "
        "recipients only",
        starttls=(587, 25, 2587),
        implicit=(465, 2465),
    )


def lookup_preset(name: str) -> Preset | None:
    """Return the preset called ``name`` (``ses-<region>`` for Amazon SES), or None."""
    preset = PRESETS.get(name)
    if preset is not None:
        return preset
    match = _SES_NAME.fullmatch(name)
    return _ses(match["region"]) if match else None


def preset_names() -> tuple[str, ...]:
    """Every preset name, sorted, with the SES pattern last."""
    return (*sorted(PRESETS), "ses-<region>")
