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
-- conninfo), the lookup takes the advisory lock 60061 after it read the row
-- and before it answers, so a test that holds that lock from another
-- session can change the key while a gate still carries the old row.
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



-- GET /plans: the active plans and credit packs, as one JSON document. With
-- monetize.test_hold on, it takes advisory lock 60062 after it read them
-- (see monetize_gate_key).
CREATE FUNCTION monetize_plans_json() RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_json  json;
BEGIN
    SELECT json_build_object(
      'plans', (SELECT coalesce(json_agg(json_build_object(
                   'id', p.id, 'name', p.name,
                   'price_cents', p.price_cents, 'currency', p.currency,
                   'interval', p.interval,
                   'monthly_quota', p.monthly_quota,
                   'rate_limit', json_build_object(
                       'requests_per_second', p.rate_limit_rps,
                       'burst', p.rate_limit_burst))
                   ORDER BY p.sort_order, p.id), '[]')
                FROM plans p WHERE p.active),
      'credit_packs', (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'name', c.name, 'credits', c.credits,
                   'price_cents', c.price_cents, 'currency', c.currency)
                   ORDER BY c.sort_order, c.id), '[]')
                FROM credit_packs c WHERE c.active))
      INTO v_json;

    IF current_setting('monetize.test_hold', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock(60062);
    END IF;

    RETURN v_json;
END
$$;

-- A plan's rate limit, as the limiters can keep it: at most one call a
-- microsecond, at least one call a second; a burst of at least one call.
-- Rows made before this constraint that break it keep being refused by the
-- gate (500, and a log line naming the plan) until they are fixed; the
-- constraint is then validated by hand:
--     ALTER TABLE plans VALIDATE CONSTRAINT plans_rate_limit_bounds;
ALTER TABLE plans ADD CONSTRAINT plans_rate_limit_bounds
    CHECK (rate_limit_rps BETWEEN 1 AND 1000000
           AND rate_limit_burst BETWEEN 1 AND 1000000) NOT VALID;

DO $$
DECLARE
    v_bad  text;
BEGIN
    SELECT string_agg(format('%s (%s/s, burst %s)', p.id, p.rate_limit_rps,
                             p.rate_limit_burst), ', ')
      INTO v_bad
      FROM plans p
     WHERE NOT (p.rate_limit_rps BETWEEN 1 AND 1000000
                AND p.rate_limit_burst BETWEEN 1 AND 1000000);

    IF v_bad IS NULL THEN
        ALTER TABLE plans VALIDATE CONSTRAINT plans_rate_limit_bounds;
    ELSE
        RAISE WARNING 'plans whose rate limit cannot be kept: %; fix them, '
                      'then VALIDATE CONSTRAINT plans_rate_limit_bounds',
                      v_bad;
    END IF;
END
$$;
