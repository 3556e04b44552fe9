"""hold and capture in one round trip: ledger_hold / ledger_capture functions

Revision ID: 5f1a2b3c4d5e
Revises: 99efa090c5d0
Create Date: 2026-11-25 13:00:00

Each function does the happy path of `Ledger.hold` / `Ledger.capture` server-side, in the same lock
order as the Python code (hold row, then wallet, then the system shard). Anything else — an unknown
wallet, a refused or taken id, too little balance, a hold not pending — returns outcome 'slow' having
written nothing, and the caller takes the general path, which gives the exact error or replay.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '5f1a2b3c4d5e'
down_revision: str | None = '99efa090c5d0'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SYSTEM_ROW = """
CREATE FUNCTION ledger_system_row(account text, user_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- A system account is spread over 16 shard rows, chosen by the wallet's user.
    SELECT account || '#' || lpad((hashtext(user_id) & 15)::text, 2, '0')
$$
"""

CHANGE_SYSTEM = """
CREATE FUNCTION ledger_change_system(
    row_id text, d_posted_credits bigint, d_posted_debits bigint, d_pending_credits bigint
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO accounts (id, kind, posted_credits, posted_debits, pending_credits, version)
    VALUES (row_id, 'system', d_posted_credits, d_posted_debits, d_pending_credits, 1)
    ON CONFLICT (id) DO UPDATE SET
        posted_credits = accounts.posted_credits + excluded.posted_credits,
        posted_debits = accounts.posted_debits + excluded.posted_debits,
        pending_credits = accounts.pending_credits + excluded.pending_credits,
        version = accounts.version + 1,
        updated_at = now()
$$
"""

HOLD = """
CREATE FUNCTION ledger_hold(
    p_id text, p_user_id text, p_wallet text, p_credit_account text, p_amount bigint,
    p_expires_at timestamptz, p_reference_type text, p_reference_id text, p_metadata jsonb,
    p_trace_id text, p_request_hash text,
    OUT outcome text, OUT created_at timestamptz, OUT posted_credits bigint,
    OUT posted_debits bigint, OUT pending_debits bigint, OUT version bigint,
    OUT updated_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    w accounts%ROWTYPE;
BEGIN
    outcome := 'slow';
    SELECT * INTO w FROM accounts WHERE id = p_wallet FOR UPDATE;
    IF NOT FOUND
        OR w.posted_credits - w.posted_debits - w.pending_debits < p_amount
        OR EXISTS (SELECT FROM failed_transfers f WHERE f.id = p_id)
    THEN
        RETURN;
    END IF;
    INSERT INTO transfers AS t (id, kind, debit_account, credit_account, amount, status, user_id,
        reference_type, reference_id, metadata, trace_id, expires_at, request_hash)
    VALUES (p_id, 'hold', p_wallet, p_credit_account, p_amount, 'pending', p_user_id,
        p_reference_type, p_reference_id, p_metadata, p_trace_id, p_expires_at, p_request_hash)
    ON CONFLICT (id) DO NOTHING
    RETURNING t.created_at INTO created_at;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE accounts a SET pending_debits = a.pending_debits + p_amount, version = a.version + 1,
        updated_at = now()
    WHERE a.id = p_wallet
    RETURNING a.posted_credits, a.posted_debits, a.pending_debits, a.version, a.updated_at
    INTO posted_credits, posted_debits, pending_debits, version, updated_at;
    PERFORM ledger_change_system(ledger_system_row(p_credit_account, p_user_id), 0, 0, p_amount);
    outcome := 'ok';
END
$$
"""

CAPTURE = """
CREATE FUNCTION ledger_capture(
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


def upgrade() -> None:
    for statement in (SYSTEM_ROW, CHANGE_SYSTEM, HOLD, CAPTURE):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_capture")
    op.execute("DROP FUNCTION ledger_hold")
    op.execute("DROP FUNCTION ledger_change_system")
    op.execute("DROP FUNCTION ledger_system_row")
