#!/usr/bin/env bash
# Install the system packages the integration tests need: a throwaway Dovecot for
# tests/integration/test_imap.py and Postfix for tests/integration/test_postfix.py
# (the deployment guide, docs/deploy-postfix.md, run for real). Idempotent and quiet:
# does nothing when `dovecot` and `postfix` are already there. Needs root (CI and the
# project's machines are root). The tests run their own Postfix instances on
# unprivileged loopback ports; a system Postfix that the package starts is stopped
# and disabled, so it neither holds port 25 nor competes for the test's mail.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

packages=()
have dovecot || packages+=(dovecot-imapd dovecot-lmtpd)
have postfix || packages+=(postfix)
if [ "${#packages[@]}" -eq 0 ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get not found; install ${packages[*]}" \
         "(Dovecot 2.3, Postfix 3.7) with your package manager" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-test-deps: must run as root (or with sudo) to install ${packages[*]}" >&2
        exit 1
    fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ! $SUDO apt-get update -qq >"$log" 2>&1; then
    echo "install-test-deps: 'apt-get update' failed:" >&2
    cat "$log" >&2
    exit 1
fi

# "No configuration": the package writes no main.cf, so it sets up no system mail
# service; the tests bring their own configuration.
echo "postfix postfix/main_mailer_type select No configuration" \
    | $SUDO debconf-set-selections 2>/dev/null || true

if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${packages[@]}" >"$log" 2>&1; then
    echo "install-test-deps: 'apt-get install ${packages[*]}' failed:" >&2
    cat "$log" >&2
    exit 1
fi

for tool in dovecot postfix; do
    if ! have "$tool"; then
        echo "install-test-deps: $tool still missing after install" >&2
        exit 1
    fi
done

# On a machine whose policy lets packages start services, keep the system Postfix
# off: the tests' instances use their own ports and queue directories.
if [ -f /etc/postfix/main.cf ] && $SUDO postfix status >/dev/null 2>&1; then
    $SUDO postfix stop >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now postfix >/dev/null 2>&1 || true
fi
