#!/usr/bin/env bash
# Run the daemon with the shipped config (SQLite in var/, SMTP on 127.0.0.1:2525,
# outgoing mail as .eml files in var/outgoing/new). Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
CONFIG="${MAILTICKET_CONFIG:-config.example.toml}"
.venv/bin/mailticket -c "$CONFIG" check-config
exec .venv/bin/mailticket -c "$CONFIG" serve "$@"
