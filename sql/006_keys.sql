-- nginx-monetize: what the gate reads of an API key, and the bounds a plan's
-- rate limit must keep.


-- The gate's lookup of a key: the key, its account, balance and plan in one
-- row (none when no key has this hash). key_expires_in is what is left of
-- the key by this server's clock, in whole milliseconds rounded down (NULL:
-- it never expires); the gate counts it down on its own clock, so it agrees
-- with the API's expires_at <= now() to the millisecond, never later.
--
-- monetize.test_hold is a hook for tests of races, never set in production:
-- when a session has it 'on' (options='-c monetize.test_hold=on' in the
-- conninfo), the lookup takes the advisory lock 60061 after it read the row and before it
-- answers, so a test that holds that lock from another session can change
-- the key while a gate still carries the old row.
CREATE FUNCTION monetize_gate_key(p_key_hash text)
RETURNS TABLE (key_id uuid, key_user uuid, key_revoked boolean,
               key_expires_in bigint, user_suspended boolean,
               user_balance bigint, plan text, plan_rps integer,
               plan_burst integer)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT k.id, k.user_id, k.revoked_at IS NOT NULL,
           floor(extract(epoch FROM k.expires_at - now()) * 1000)::bigint,
           u.suspended_at IS NOT NULL, coalesce(b.balance, 0),
           p.id, p.rate_limit_rps, p.rate_limit_burst
      FROM api_keys k
      JOIN users u ON u.id = k.user_id
      LEFT JOIN balances b ON b.user_id = k.user_id
      LEFT JOIN plans p ON p.id = (SELECT o.plan_id
                                     FROM monetize_plan_of(k.user_id) AS o)
     WHERE k.key_hash = p_key_hash;

    IF current_setting('monetize.test_hold', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock(60061);
    END IF;
END
$$;

