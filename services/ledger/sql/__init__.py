"""The ledger's server-side functions, one `CREATE OR REPLACE FUNCTION` per `.sql` file here: the
happy path of holds and captures (`ledger_apply` and its steps, the rules `service/fast.py` runs) and
the system account shards they and the repository share.

The files hold the current definitions, and migrations load them (`definitions`): to change a
function, edit its file and add a migration that loads it again. Migrations before `b41d7e2a9c05`
carry the definitions of their day inline, so history replays as it ran.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

# In the order they are created: each calls only functions above it.
FUNCTIONS = (
    "ledger_system_row",
    "ledger_change_system",
    "ledger_hold_step",
    "ledger_capture_step",
    "ledger_apply",
)


def definitions() -> list[str]:
    """Each function's `CREATE OR REPLACE FUNCTION` statement, in creation order."""
    return [(HERE / f"{name}.sql").read_text() for name in FUNCTIONS]
