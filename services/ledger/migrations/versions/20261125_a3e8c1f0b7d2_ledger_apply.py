"""a batch of holds and captures in one call: ledger_apply

Revision ID: a3e8c1f0b7d2
Revises: 7b2c9d4e6f10
Create Date: 2026-11-25 15:00:00

`ledger_apply(steps)` runs `ledger_hold` / `ledger_capture` for each step of a JSON array, strictly in
array order, and returns one row per step in that order (a hold's row has the capture-only columns
NULL). A group commit sends its whole batch as one statement instead of one statement per step.

Before the first step it locks every row the batch will change, in the ledger's one lock order:
the captured hold rows, then the wallets, then the system shard rows, each sorted by id. One batch
touches many wallets and shards; in step order, two batches of two replicas would lock them in
opposite orders and deadlock (each then rolls back after `deadlock_timeout` and its requests go one
by one). Every other transaction of the ledger locks at most one hold, then its wallet, then a shard,
so the order holds everywhere.
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'a3e8c1f0b7d2'
down_revision: str | None = '7b2c9d4e6f10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPLY = """
CREATE FUNCTION ledger_apply(p_steps jsonb) RETURNS TABLE (
    outcome text, created_at timestamptz, amount bigint, resolved_at timestamptz,
    posted_credits bigint, posted_debits bigint, pending_debits bigint,
    version bigint, updated_at timestamptz,
    hold_debit_account text, hold_credit_account text, hold_amount bigint,
    hold_user_id text, hold_reference_type text, hold_reference_id text,
    hold_metadata jsonb, hold_trace_id text, hold_created_at timestamptz,
    hold_expires_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    s jsonb;
    hold_ids text[];
    held_wallets text[];
    held_shards text[];
BEGIN
    hold_ids := ARRAY(
        SELECT DISTINCT e ->> 'hold_id' FROM jsonb_array_elements(p_steps) e
        WHERE e ->> 'kind' = 'capture' ORDER BY 1
    );
    SELECT coalesce(array_agg(h.debit_account), '{}'),
        coalesce(array_agg(ledger_system_row(h.credit_account, h.user_id)), '{}')
    INTO held_wallets, held_shards
    FROM (
        SELECT debit_account, credit_account, user_id FROM transfers
        WHERE id = ANY(hold_ids) ORDER BY id FOR UPDATE
    ) h;
    PERFORM FROM accounts a
    WHERE a.id = ANY(held_wallets || ARRAY(
        SELECT e ->> 'wallet' FROM jsonb_array_elements(p_steps) e WHERE e ->> 'kind' = 'hold'
    ))
    ORDER BY a.id FOR UPDATE;
    PERFORM FROM accounts a
    WHERE a.id = ANY(held_shards || ARRAY(
        SELECT ledger_system_row(e ->> 'credit_account', e ->> 'user_id')
        FROM jsonb_array_elements(p_steps) e WHERE e ->> 'kind' = 'hold'
    ))
    ORDER BY a.id FOR UPDATE;
    FOR s IN SELECT e FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS x(e, n) ORDER BY n LOOP
        IF s ->> 'kind' = 'hold' THEN
            RETURN QUERY SELECT h.outcome, h.created_at, NULL::bigint, NULL::timestamptz,
                h.posted_credits, h.posted_debits, h.pending_debits, h.version, h.updated_at,
                NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text, NULL::text,
                NULL::jsonb, NULL::text, NULL::timestamptz, NULL::timestamptz
            FROM ledger_hold(s ->> 'id', s ->> 'user_id', s ->> 'wallet', s ->> 'credit_account',
                (s ->> 'amount')::bigint, (s ->> 'expires_at')::timestamptz, s ->> 'reference_type',
                s ->> 'reference_id', s -> 'metadata', s ->> 'trace_id', s ->> 'request_hash') h;
        ELSIF s ->> 'kind' = 'capture' THEN
            RETURN QUERY SELECT * FROM ledger_capture(s ->> 'id', s ->> 'hold_id',
                (s ->> 'amount')::bigint, s -> 'metadata', (s ->> 'now')::timestamptz,
                s ->> 'trace_id', s ->> 'request_hash');
        ELSE
            RAISE EXCEPTION 'ledger_apply: unknown step kind %', s ->> 'kind';
        END IF;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute(APPLY)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_apply(jsonb)")
