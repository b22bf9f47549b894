# Shared settings of the mail test bed; sourced by start, stop and env.
# Every address is on loopback and every port is fixed, on addresses other work here does not
# use (127.0.3.x, and high ports on 127.0.0.2), so parallel test runs do not collide.

TB_ROOT=${SMTP_CANARY_TESTBED:-/tmp/smtp-canary-testbed}
TB_HOST=127.0.3.1            # Postfix (submission, MX), Dovecot IMAP, the milters
TB_DNS_IP=127.0.3.53         # Knot, port 53 (resolv.conf takes no port)
TB_DNS_PORT=53
TB_STRICT_HOST=127.0.0.2     # Dovecot IMAP where plaintext LOGIN is refused
# The submission ports are not 587/465 on purpose: a client cannot infer their TLS mode, so
# a wrong `tls:` is caught at run time (tls_mode_mismatch), not refused by the config.
TB_SUBMISSION_PORT=10587     # STARTTLS, AUTH only after it
TB_SMTPS_PORT=10465          # implicit TLS
TB_MX_PORT=2525              # the receiving MX (never 25: Postfix treats it as itself)
TB_IMAP_PORT=1143            # STARTTLS
TB_IMAPS_PORT=1993           # implicit TLS
TB_STRICT_IMAP_PORT=21143
TB_STRICT_IMAPS_PORT=21993
TB_DKIM_SIGN_PORT=8891
TB_DKIM_VERIFY_PORT=8892
TB_DMARC_PORT=8893
TB_AUTHSERV_ID=mx.example.test
TB_DOMAIN=example.test
TB_USER=canary@example.test
TB_STRICT_USER=strict@example.test  # a second mailbox, read on $TB_STRICT_HOST
TB_JUNK_ADDRESS=junk@example.test   # aliased to canary+Junk: Dovecot files it in Junk
# Sending domains, each broken in one way (see start: zone_* functions).
TB_SPF_FAIL_DOMAIN=spf-fail.test    # SPF does not authorise the relay
TB_DKIM_FAIL_DOMAIN=dkim-fail.test  # the DKIM key in DNS is not the signing key
TB_NO_DMARC_DOMAIN=no-dmarc.test    # no _dmarc record
TB_DMARC_NONE_DOMAIN=dmarc-none.test # p=none
TB_SPOOF_DOMAIN=spoof.test          # SPF and DKIM both fail: DMARC fails (p=reject)

TB_DAEMONS="knot dovecot opendkim-sign opendkim-verify opendmarc postfix"

tb_log() { printf 'testbed: %s\n' "$*" >&2; }

# PIDs of the live (not zombie) processes in session $1.
tb_session_members() {
  local sid=$1 f line fields
  for f in /proc/[0-9]*/stat; do
    { read -r line < "$f"; } 2>/dev/null || continue
    read -r -a fields <<< "${line##*) }"   # state ppid pgrp session ...
    if [ "${fields[3]}" = "$sid" ] && [ "${fields[0]}" != Z ]; then
      f=${f#/proc/}; echo "${f%/stat}"
    fi
  done | tr '\n' ' '
}

# True while PID $1 exists and is not a zombie.
tb_alive() {
  local line fields
  { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
  read -r -a fields <<< "${line##*) }"
  [ "${fields[0]}" != Z ]
}

# Stop the daemon whose session leader's PID is in pidfile $1: SIGTERM the leader, wait for
# every process of its session to exit (libmilter daemons take ~4 s), SIGKILL after 15 s.
tb_stop_pidfile() {
  pidfile=$1
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  members=$(tb_session_members "$pid")
  [ -n "$members" ] || { rm -f "$pidfile"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( $(date +%s) + 15 ))
  while :; do
    left=$(for p in $members; do if tb_alive "$p"; then echo "$p"; fi; done | tr "\n" " ")
    [ -n "$left" ] || break
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tb_log "$(basename "$pidfile" .pid): SIGKILL to$left"
      kill -KILL $left 2>/dev/null || true
      sleep 0.2
      break
    fi
    # Whatever the leader already stopped, signal the rest directly once it is gone.
    [ -d "/proc/$pid" ] || kill -TERM $left 2>/dev/null || true
    sleep 0.05
  done
  rm -f "$pidfile"
}
