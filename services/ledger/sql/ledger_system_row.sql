-- The shard row of a system account a wallet's transfers touch (16 per account, by user).
CREATE OR REPLACE FUNCTION ledger_system_row(account text, user_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- A system account is spread over 16 shard rows, chosen by the wallet's user.
    SELECT account || '#' || lpad((hashtext(user_id) & 15)::text, 2, '0')
$$
