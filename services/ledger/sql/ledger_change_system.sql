-- Adds deltas to a system account shard row, creating it on first use (the general path's
-- `repository.change_system`).
CREATE OR REPLACE FUNCTION ledger_change_system(
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
