-- The happy path of one capture (`Holds.capture_general` is every case): 'slow' having written
-- nothing for anything else. Called by ledger_apply.
CREATE OR REPLACE FUNCTION ledger_capture_step(s jsonb,
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
