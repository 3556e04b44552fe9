"""api key scopes: a constrained set, with room for "admin"

Revision ID: 5c1e0a7d2b94
Revises: 135f27f7dcaf
Create Date: 2026-12-07 12:00:00.000000

Scopes stay a text[] holding a set of known names (read, write, admin), checked by the database: a
new scope widens this one constraint, and the budget and model allow-list a key will gain are new
nullable columns beside it, so no existing row is ever rewritten. Existing keys hold read and write
only and satisfy the check as they are.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '5c1e0a7d2b94'
down_revision: str | None = '135f27f7dcaf'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        op.f('ck_api_keys_scopes'),
        'api_keys',
        "cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'admin']::text[]",
    )


def downgrade() -> None:
    # The older code knows no admin scope: such keys lose it, and a key left with none is revoked.
    op.drop_constraint(op.f('ck_api_keys_scopes'), 'api_keys', type_='check')
    op.execute("UPDATE api_keys SET scopes = array_remove(scopes, 'admin')")
    op.execute("UPDATE api_keys SET revoked_at = now() WHERE cardinality(scopes) = 0 AND revoked_at IS NULL")
