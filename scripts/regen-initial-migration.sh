#!/usr/bin/env bash
# Pre-release only: regenerate migration 0001 from the models in store/schema.py.
# Nothing is deployed yet, so the schema is one initial revision; after the first
# release every change gets its own revision instead (alembic revision --autogenerate).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rm -f mailticket/store/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp/gen.db" <<'PY'
import sys
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine
from mailticket.store.migrate import MIGRATIONS
cfg = Config()
cfg.set_main_option("script_location", str(MIGRATIONS))
engine = create_engine(f"sqlite:///{sys.argv[1]}")
with engine.begin() as conn:
    cfg.attributes["connection"] = conn
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
sed -i '/^Create Date:/d' mailticket/store/migrations/versions/0001_initial_schema.py
.venv/bin/ruff check --fix -q --unsafe-fixes mailticket/store/migrations/versions/0001_initial_schema.py || true
.venv/bin/ruff format -q mailticket/store/migrations/versions/0001_initial_schema.py
echo "regenerated mailticket/store/migrations/versions/0001_initial_schema.py"
