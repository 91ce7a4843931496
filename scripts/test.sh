#!/usr/bin/env bash
# Run the whole test suite: bootstrap .venv, install Dovecot for the IMAP tests,
# lint, then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
bash scripts/install-test-deps.sh
.venv/bin/ruff check mailticket tests
.venv/bin/mypy mailticket
exec .venv/bin/python -m pytest -q -n 2 "$@"
