-- A batch of hold and capture steps in order, one row per step; locks in the ledger's one order
-- (captured holds, then wallets, both sorted, before the first step; system shards summed and
-- upserted in id order after the last). See docs/services/ledger.md, "The hot path".
CREATE OR REPLACE FUNCTION ledger_apply(p_steps jsonb) RETURNS TABLE (
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
