"""The dovecot.conf the test Dovecot runs: loopback listeners, Junk and Trash, IDLE or not."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

__all__ = ["LOGIN_USER", "MAIL_USER", "config_text"]

# Users the Debian packages create: the mail belongs to MAIL_USER, logins run as LOGIN_USER.
MAIL_USER = "dovecot"
LOGIN_USER = "dovenull"

# Dovecot 2.3's built-in post-login CAPABILITY (CAPABILITY_STRING) minus IDLE. Setting
# imap_capability replaces it both before and after login; STARTTLS, AUTH= and LOGINDISABLED
# are still added by imap-login as usual.
_CAPABILITY_WITHOUT_IDLE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


def config_text(root: Path, host: str, ports: Mapping[str, int], *, idle: bool,
                plaintext_login: bool, mail_uid: int, mail_gid: int) -> str:
    """dovecot.conf for an instance under ``root`` listening on ``host`` at ``ports`` (imap,
    imaps, lmtp); without ``idle`` it does not offer IDLE."""
    capability = "" if idle else f"imap_capability = {_CAPABILITY_WITHOUT_IDLE}\n"
    if plaintext_login:
        auth = "ssl = yes\ndisable_plaintext_auth = no\n"
    else:
        auth = "ssl = required\ndisable_plaintext_auth = yes\n"
    return f"""\
# Written by testservers/dovecot.py. Self-contained: every path is under {root}.
instance_name = dovecot-test-{secrets.token_hex(4)}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
auth_verbose = yes
verbose_proctitle = yes
protocols = imap lmtp
listen = {host}
hostname = imap.example.test
default_internal_user = {MAIL_USER}
default_login_user = {LOGIN_USER}
{auth}ssl_cert = <{root}/tls/server.pem
ssl_key = <{root}/tls/server.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
# Negative login tests must not slow later ones down (no failure delay, no anvil penalty).
auth_failure_delay = 0
first_valid_uid = {mail_uid}
last_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
last_valid_gid = {mail_gid}
mail_location = maildir:~/Maildir
mail_fsync = never
{capability}
passdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
namespace inbox {{
  inbox = yes
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {ports['imap']}
  }}
  inet_listener imaps {{
    address = {host}
    port = {ports['imaps']}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {ports['lmtp']}
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
