#!/usr/bin/env bash
# Run the whole test suite: bootstrap .venv, install Dovecot for the IMAP tests,
# lint (ruff, mypy, import-linter contracts), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
bash scripts/install-test-deps.sh
.venv/bin/ruff check mailticket tests bench
.venv/bin/mypy mailticket
.venv/bin/lint-imports
exec .venv/bin/python -m pytest -q -n 2 "$@"
