#!/bin/sh
# Install the Dovecot packages that testservers/dovecot.py runs (Debian 12: Dovecot 2.3.x).
# Idempotent; CI calls it before the tests. Starts no daemon: the tests run their own instances.
set -eu

PACKAGES="dovecot-core dovecot-imapd dovecot-lmtpd"

installed() {
  for pkg in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || return 1
  done
}

if installed; then
  echo "install-dovecot: $PACKAGES already installed ($(dpkg-query -W -f='${Version}' dovecot-core))"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive

# Keep the packages' postinst from starting a system-wide Dovecot on ports 143/993
# (no systemd here; invoke-rc.d honours policy-rc.d). Only create it if absent, and remove it after.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 755 $POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi

# apt-get update only when the package lists can't provide the packages (fresh machine, empty lists).
if ! apt-cache show dovecot-core dovecot-imapd dovecot-lmtpd >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
# shellcheck disable=SC2086
if ! $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES; then
  # Stale lists (a 404 on a superseded .deb): refresh once and retry.
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES
fi
dpkg-query -W -f='dovecot-core ${Version}\n' dovecot-core
