#!/usr/bin/env bash
# Install the system packages the integration tests need (a throwaway Dovecot for
# tests/integration/test_imap.py). Idempotent and quiet: does nothing when
# `dovecot` is already on PATH. Needs root (CI and the project's machines are root).
set -euo pipefail

if command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get not found; install dovecot-imapd and dovecot-lmtpd" \
         "(Dovecot 2.3) with your package manager" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-test-deps: must run as root (or with sudo) to install dovecot" >&2
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

if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        dovecot-imapd dovecot-lmtpd >"$log" 2>&1; then
    echo "install-test-deps: 'apt-get install dovecot-imapd dovecot-lmtpd' failed:" >&2
    cat "$log" >&2
    exit 1
fi

if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
    echo "install-test-deps: dovecot still missing after install" >&2
    exit 1
fi
