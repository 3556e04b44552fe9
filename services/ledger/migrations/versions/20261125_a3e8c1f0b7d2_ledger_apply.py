"""a batch of holds and captures in one call: ledger_apply

Revision ID: a3e8c1f0b7d2
Revises: 7b2c9d4e6f10
Create Date: 2026-11-25 15:00:00

`ledger_apply(steps)` runs each step of a JSON array — a hold or a capture, the same happy path as
`Ledger.hold` / `Ledger.capture` — strictly in array order, and returns one row per step in that order
(a hold's row has the capture-only columns NULL; outcome 'slow' means the step wrote nothing and the
caller takes the general path). A group commit sends its whole batch as this one statement.

Locks are taken in the ledger's one order: the captured hold rows, then the wallets (both sorted by id,
before the first step), then the system shard rows (sorted, after the last step, one upsert each with
the batch's summed deltas). Batches of two replicas touch many wallets and shards; taken in step
order, their locks would cross and deadlock. Every other transaction of the ledger locks at most one
hold, then its wallet, then a shard, so the order holds everywhere. Shards last also means a batch
holds the hot shard rows only for its commit, so the next batch can do its steps meanwhile.

`ledger_hold` and `ledger_capture` stay: the previous release's replicas call them during a rollout.
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'a3e8c1f0b7d2'
down_revision: str | None = '7b2c9d4e6f10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOLD_STEP = """
CREATE FUNCTION ledger_hold_step(s jsonb,
    OUT outcome text, OUT created_at timestamptz, OUT posted_credits bigint,
    OUT posted_debits bigint, OUT pending_debits bigint, OUT version bigint,
    OUT updated_at timestamptz, OUT shard text
) LANGUAGE plpgsql AS $$
DECLARE
    w accounts%ROWTYPE;
    p_amount bigint := (s ->> 'amount')::bigint;
BEGIN
    outcome := 'slow';
    SELECT * INTO w FROM accounts WHERE id = s ->> 'wallet' FOR UPDATE;
    IF NOT FOUND
        OR w.posted_credits - w.posted_debits - w.pending_debits < p_amount
        OR EXISTS (SELECT FROM failed_transfers f WHERE f.id = s ->> 'id')
    THEN
        RETURN;
    END IF;
    INSERT INTO transfers AS t (id, kind, debit_account, credit_account, amount, status, user_id,
        reference_type, reference_id, metadata, trace_id, expires_at, request_hash)
    VALUES (s ->> 'id', 'hold', w.id, s ->> 'credit_account', p_amount, 'pending', s ->> 'user_id',
        s ->> 'reference_type', s ->> 'reference_id', s -> 'metadata', s ->> 'trace_id',
        (s ->> 'expires_at')::timestamptz, s ->> 'request_hash')
    ON CONFLICT (id) DO NOTHING
    RETURNING t.created_at INTO created_at;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE accounts a SET pending_debits = a.pending_debits + p_amount, version = a.version + 1,
        updated_at = now()
    WHERE a.id = w.id
    RETURNING a.posted_credits, a.posted_debits, a.pending_debits, a.version, a.updated_at
    INTO posted_credits, posted_debits, pending_debits, version, updated_at;
    shard := ledger_system_row(s ->> 'credit_account', s ->> 'user_id');
    outcome := 'ok';
END
$$
"""

CAPTURE_STEP = """
CREATE FUNCTION ledger_capture_step(s jsonb,
    OUT outcome text, OUT created_at timestamptz, OUT amount bigint, OUT resolved_at timestamptz,
    OUT posted_credits bigint, OUT posted_debits bigint, OUT pending_debits bigint,
    OUT version bigint, OUT updated_at timestamptz,
    -- the hold, as it was before this capture resolved it
    OUT hold_debit_account text, OUT hold_credit_account text, OUT hold_amount bigint,
    OUT hold_user_id text, OUT hold_reference_type text, OUT hold_reference_id text,
    OUT hold_metadata jsonb, OUT hold_trace_id text, OUT hold_created_at timestamptz,
    OUT hold_expires_at timestamptz, OUT shard text
) LANGUAGE plpgsql AS $$
DECLARE
    h transfers%ROWTYPE;
    posted bigint;
    meta jsonb;
BEGIN
    outcome := 'slow';
    SELECT * INTO h FROM transfers WHERE id = s ->> 'hold_id' FOR UPDATE;
    IF NOT FOUND OR h.kind <> 'hold' OR h.status <> 'pending'
        OR h.expires_at <= (s ->> 'now')::timestamptz
    THEN
        RETURN;
    END IF;
    posted := coalesce((s ->> 'amount')::bigint, h.amount);
    IF posted > h.amount THEN
        RETURN;
    END IF;
    PERFORM FROM accounts WHERE id = h.debit_account FOR UPDATE;
    IF EXISTS (SELECT FROM failed_transfers f WHERE f.id = s ->> 'id') THEN
        RETURN;
    END IF;
    meta := h.metadata || (s -> 'metadata');
    INSERT INTO transfers AS t (id, kind, debit_account, credit_account, amount, status, user_id,
        reference_type, reference_id, metadata, trace_id, linked_transfer_id, request_hash)
    VALUES (s ->> 'id', 'capture', h.debit_account, h.credit_account, posted, 'posted', h.user_id,
        h.reference_type, h.reference_id, meta, s ->> 'trace_id', h.id, s ->> 'request_hash')
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
    INSERT INTO usage_hourly AS u (user_id, hour, model, kind, spend_milli, charges)
    VALUES (h.user_id, date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
        coalesce(meta ->> 'model', ''), coalesce(meta ->> 'kind', ''), posted, 1)
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
    shard := ledger_system_row(h.credit_account, h.user_id);
    outcome := 'ok';
END
$$
"""

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
    h record;
    c record;
    held_wallets text[];
    -- the system shard deltas of the steps written, applied at the end
    shards text[] := '{}';
    d_posted bigint[] := '{}';
    d_pending bigint[] := '{}';
BEGIN
    SELECT coalesce(array_agg(x.debit_account), '{}') INTO held_wallets FROM (
        SELECT t.debit_account FROM transfers t
        WHERE t.id IN (SELECT e ->> 'hold_id' FROM jsonb_array_elements(p_steps) e
                       WHERE e ->> 'kind' = 'capture')
        ORDER BY t.id FOR UPDATE
    ) x;
    PERFORM FROM accounts a
    WHERE a.id = ANY(held_wallets) OR a.id IN (
        SELECT e ->> 'wallet' FROM jsonb_array_elements(p_steps) e WHERE e ->> 'kind' = 'hold'
    )
    ORDER BY a.id FOR UPDATE;

    FOR s IN SELECT e FROM jsonb_array_elements(p_steps) WITH ORDINALITY AS x(e, n) ORDER BY n LOOP
        IF s ->> 'kind' = 'hold' THEN
            h := ledger_hold_step(s);
            IF h.outcome = 'ok' THEN
                shards := shards || h.shard;
                d_posted := d_posted || 0::bigint;
                d_pending := d_pending || (s ->> 'amount')::bigint;
            END IF;
            RETURN QUERY SELECT h.outcome, h.created_at, NULL::bigint, NULL::timestamptz,
                h.posted_credits, h.posted_debits, h.pending_debits, h.version, h.updated_at,
                NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text, NULL::text,
                NULL::jsonb, NULL::text, NULL::timestamptz, NULL::timestamptz;
        ELSIF s ->> 'kind' = 'capture' THEN
            c := ledger_capture_step(s);
            IF c.outcome = 'ok' THEN
                shards := shards || c.shard;
                d_posted := d_posted || c.amount;
                d_pending := d_pending || -c.hold_amount;
            END IF;
            RETURN QUERY SELECT c.outcome, c.created_at, c.amount, c.resolved_at,
                c.posted_credits, c.posted_debits, c.pending_debits, c.version, c.updated_at,
                c.hold_debit_account, c.hold_credit_account, c.hold_amount, c.hold_user_id,
                c.hold_reference_type, c.hold_reference_id, c.hold_metadata, c.hold_trace_id,
                c.hold_created_at, c.hold_expires_at;
        ELSE
            RAISE EXCEPTION 'ledger_apply: unknown step kind %', s ->> 'kind';
        END IF;
    END LOOP;

    INSERT INTO accounts AS a (id, kind, posted_credits, posted_debits, pending_credits, version)
    SELECT d.id, 'system', sum(d.posted), 0, sum(d.pending), count(*)
    FROM unnest(shards, d_posted, d_pending) AS d(id, posted, pending)
    GROUP BY d.id ORDER BY d.id
    ON CONFLICT (id) DO UPDATE SET
        posted_credits = a.posted_credits + excluded.posted_credits,
        pending_credits = a.pending_credits + excluded.pending_credits,
        version = a.version + excluded.version,
        updated_at = now();
END
$$
"""


def upgrade() -> None:
    op.execute(HOLD_STEP)
    op.execute(CAPTURE_STEP)
    op.execute(APPLY)


def downgrade() -> None:
    op.execute("DROP FUNCTION ledger_apply(jsonb)")
    op.execute("DROP FUNCTION ledger_capture_step(jsonb)")
    op.execute("DROP FUNCTION ledger_hold_step(jsonb)")
