"""the server-side functions from services/ledger/sql; ledger_hold and ledger_capture dropped

Revision ID: b41d7e2a9c05
Revises: a3e8c1f0b7d2
Create Date: 2026-12-07 19:00:00

The functions in use — `ledger_apply`, its hold and capture steps, and the system shard helpers — are
(re)created from their `.sql` files, the one place they are written now; the definitions are the
same as the migrations before left them. `ledger_hold` and `ledger_capture` (one hold or capture per
call) have had no caller since `ledger_apply` replaced them (a3e8c1f0b7d2 kept them for the rollout
of that release), so they go. A downgrade puts them back as they were.
"""
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

from services.ledger.sql import definitions

revision: str = 'b41d7e2a9c05'
down_revision: str | None = 'a3e8c1f0b7d2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in definitions():
        op.execute(statement)
    op.execute("DROP FUNCTION ledger_hold")
    op.execute("DROP FUNCTION ledger_capture")


def _migration(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade() -> None:
    # As the migrations that made them left them: the hold of 5f1a2b3c4d5e, the capture of 7b2c9d4e6f10.
    op.execute(_migration("20261125_5f1a2b3c4d5e_hold_capture_functions").HOLD)
    op.execute(_migration("20261125_7b2c9d4e6f10_usage_hourly").CAPTURE)
