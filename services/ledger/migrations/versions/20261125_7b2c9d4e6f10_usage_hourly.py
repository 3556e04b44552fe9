"""usage_hourly: spend per user, UTC hour, model and kind, kept with every spend change

Revision ID: 7b2c9d4e6f10
Revises: 5f1a2b3c4d5e
Create Date: 2026-11-25 14:00:00

`ledger_capture` is replaced by the same function plus the rollup upsert (the Python paths — capture,
debit, refund — upsert in their own transactions). The rollup is backfilled from the transfers:
each capture/debit in the UTC hour of its creation, less its refunds; `charges` counts those not
fully refunded.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '7b2c9d4e6f10'
down_revision: str | None = '5f1a2b3c4d5e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CAPTURE = """
CREATE OR REPLACE FUNCTION ledger_capture(
    p_id text, p_hold_id text, p_amount bigint, p_metadata jsonb, p_now timestamptz,
    p_trace_id text, p_request_hash text,
    OUT outcome text, OUT created_at timestamptz, OUT amount bigint, OUT resolved_at timestamptz,
    OUT posted_credits bigint, OUT posted_debits bigint, OUT pending_debits bigint,
    OUT version bigint, OUT updated_at timestamptz,
    -- the hold, as it was before this capture resolved it
    OUT hold_debit_account text, OUT hold_credit_account text, OUT hold_amount bigint,
    OUT hold_user_id text, OUT hold_reference_type text, OUT hold_reference_id text,
    OUT hold_metadata jsonb, OUT hold_trace_id text, OUT hold_created_at timestamptz,
    OUT hold_expires_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    h transfers%ROWTYPE;
    posted bigint;
BEGIN
    outcome := 'slow';
    SELECT * INTO h FROM transfers WHERE id = p_hold_id FOR UPDATE;
    IF NOT FOUND OR h.kind <> 'hold' OR h.status <> 'pending' OR h.expires_at <= p_now THEN
        RETURN;
    END IF;
    posted := coalesce(p_amount, h.amount);
    IF posted > h.amount THEN
        RETURN;
    END IF;
    PERFORM FROM accounts WHERE id = h.debit_account FOR UPDATE;
    IF EXISTS (SELECT FROM failed_transfers f WHERE f.id = p_id) THEN
        RETURN;
    END IF;
    INSERT INTO transfers AS t (id, kind, debit_account, credit_account, amount, status, user_id,
        reference_type, reference_id, metadata, trace_id, linked_transfer_id, request_hash)
    VALUES (p_id, 'capture', h.debit_account, h.credit_account, posted, 'posted', h.user_id,
        h.reference_type, h.reference_id, h.metadata || p_metadata, p_trace_id, h.id, p_request_hash)
    ON CONFLICT (id) DO NOTHING
    RETURNING t.created_at INTO created_at;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE transfers t SET status = 'posted', resolved_at = now() WHERE t.id = h.id
    RETURNING t.resolved_at INTO resolved_at;
    UPDATE accounts a SET pending_debits = a.pending_debits - h.amount,
        posted_debits = a.posted_debits + posted, version = a.version + 1, updated_at = now()
    WHERE a.id = h.debit_account
    RETURNING a.posted_credits, a.posted_debits, a.pending_debits, a.version, a.updated_at
    INTO posted_credits, posted_debits, pending_debits, version, updated_at;
    PERFORM ledger_change_system(
        ledger_system_row(h.credit_account, h.user_id), posted, 0, -h.amount
    );
    INSERT INTO usage_hourly AS u (user_id, hour, model, kind, spend_milli, charges)
    VALUES (h.user_id, date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
        coalesce((h.metadata || p_metadata) ->> 'model', ''),
        coalesce((h.metadata || p_metadata) ->> 'kind', ''), posted, 1)
    ON CONFLICT (user_id, hour, model, kind) DO UPDATE
    SET spend_milli = u.spend_milli + excluded.spend_milli, charges = u.charges + excluded.charges;
    amount := posted;
    hold_debit_account := h.debit_account;
    hold_credit_account := h.credit_account;
    hold_amount := h.amount;
    hold_user_id := h.user_id;
    hold_reference_type := h.reference_type;
    hold_reference_id := h.reference_id;
    hold_metadata := h.metadata;
    hold_trace_id := h.trace_id;
    hold_created_at := h.created_at;
    hold_expires_at := h.expires_at;
    outcome := 'ok';
END
$$
"""

PREVIOUS_CAPTURE = """
CREATE OR REPLACE FUNCTION ledger_capture(
    p_id text, p_hold_id text, p_amount bigint, p_metadata jsonb, p_now timestamptz,
    p_trace_id text, p_request_hash text,
    OUT outcome text, OUT created_at timestamptz, OUT amount bigint, OUT resolved_at timestamptz,
    OUT posted_credits bigint, OUT posted_debits bigint, OUT pending_debits bigint,
    OUT version bigint, OUT updated_at timestamptz,
    -- the hold, as it was before this capture resolved it
    OUT hold_debit_account text, OUT hold_credit_account text, OUT hold_amount bigint,
    OUT hold_user_id text, OUT hold_reference_type text, OUT hold_reference_id text,
    OUT hold_metadata jsonb, OUT hold_trace_id text, OUT hold_created_at timestamptz,
    OUT hold_expires_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    h transfers%ROWTYPE;
    posted bigint;
BEGIN
    outcome := 'slow';
    SELECT * INTO h FROM transfers WHERE id = p_hold_id FOR UPDATE;
    IF NOT FOUND OR h.kind <> 'hold' OR h.status <> 'pending' OR h.expires_at <= p_now THEN
        RETURN;
    END IF;
    posted := coalesce(p_amount, h.amount);
    IF posted > h.amount THEN
        RETURN;
    END IF;
    PERFORM FROM accounts WHERE id = h.debit_account FOR UPDATE;
    IF EXISTS (SELECT FROM failed_transfers f WHERE f.id = p_id) THEN
        RETURN;
    END IF;
    INSERT INTO transfers AS t (id, kind, debit_account, credit_account, amount, status, user_id,
        reference_type, reference_id, metadata, trace_id, linked_transfer_id, request_hash)
    VALUES (p_id, 'capture', h.debit_account, h.credit_account, posted, 'posted', h.user_id,
        h.reference_type, h.reference_id, h.metadata || p_metadata, p_trace_id, h.id, p_request_hash)
    ON CONFLICT (id) DO NOTHING
    RETURNING t.created_at INTO created_at;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE transfers t SET status = 'posted', resolved_at = now() WHERE t.id = h.id
    RETURNING t.resolved_at INTO resolved_at;
    UPDATE accounts a SET pending_debits = a.pending_debits - h.amount,
        posted_debits = a.posted_debits + posted, version = a.version + 1, updated_at = now()
    WHERE a.id = h.debit_account
    RETURNING a.posted_credits, a.posted_debits, a.pending_debits, a.version, a.updated_at
    INTO posted_credits, posted_debits, pending_debits, version, updated_at;
    PERFORM ledger_change_system(
        ledger_system_row(h.credit_account, h.user_id), posted, 0, -h.amount
    );
    amount := posted;
    hold_debit_account := h.debit_account;
    hold_credit_account := h.credit_account;
    hold_amount := h.amount;
    hold_user_id := h.user_id;
    hold_reference_type := h.reference_type;
    hold_reference_id := h.reference_id;
    hold_metadata := h.metadata;
    hold_trace_id := h.trace_id;
    hold_created_at := h.created_at;
    hold_expires_at := h.expires_at;
    outcome := 'ok';
END
$$
"""

BACKFILL = """
INSERT INTO usage_hourly (user_id, hour, model, kind, spend_milli, charges)
SELECT o.user_id, date_trunc('hour', o.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
    coalesce(o.metadata ->> 'model', ''), coalesce(o.metadata ->> 'kind', ''),
    sum(o.amount - coalesce(r.refunded, 0)),
    count(*) FILTER (WHERE o.amount - coalesce(r.refunded, 0) > 0)
FROM transfers o
LEFT JOIN (
    SELECT linked_transfer_id, sum(amount) AS refunded FROM transfers
    WHERE kind = 'refund' GROUP BY linked_transfer_id
) r ON r.linked_transfer_id = o.id
WHERE o.kind IN ('capture', 'debit') AND o.user_id IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT (user_id, hour, model, kind) DO UPDATE
SET spend_milli = usage_hourly.spend_milli + excluded.spend_milli,
    charges = usage_hourly.charges + excluded.charges
"""


def upgrade() -> None:
    op.create_table(
        'usage_hourly',
        sa.Column('user_id', sa.Text(), nullable=False),
        sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
        sa.Column('model', sa.Text(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        sa.Column('spend_milli', sa.BigInteger(), nullable=False),
        sa.Column('charges', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('user_id', 'hour', 'model', 'kind', name=op.f('pk_usage_hourly')),
    )
    op.execute(CAPTURE)
    op.execute(BACKFILL)


def downgrade() -> None:
    op.execute(PREVIOUS_CAPTURE)
    op.drop_table('usage_hourly')
