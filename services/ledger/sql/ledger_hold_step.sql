-- The happy path of one hold (`Holds.hold_general` is every case): 'slow' having written nothing
-- for anything else. Called by ledger_apply, which has locked the wallet already.
CREATE OR REPLACE FUNCTION ledger_hold_step(s jsonb,
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
