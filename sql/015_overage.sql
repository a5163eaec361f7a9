-- nginx-monetize: overage billed through Stripe meters.
--
-- A plan with an overage price (a Stripe metered price) and a meter event
-- name lets the calls past its monthly quota through, where a location
-- enforces the quota, instead of refusing them: they are counted in
-- quota_usage (calls goes on past the quota; overage counts those past
-- it) and paid with no credits. Every other plan is as before.
--
-- Reporting is batched from those counts, not per call: for each account
-- and period, what is counted past the quota and not reported yet is
-- recorded as reported and queued as one "meter_event" job (sql/012) in
-- one transaction, at most once per interval. Its identifier, which Stripe
-- keeps unique, is the range of the period's reported calls it covers,
-- "<user>:<period start, epoch>:<from>-<to>"; overage_reported only grows,
-- so no two reports share one.
--
-- A void (sql/005) gives an overage call back like an included one. If
-- the call was reported already, a meter event cannot be taken back: the
-- next report of the period is net of it (overage_reported stays ahead of
-- overage until more calls pass).


ALTER TABLE plans ADD COLUMN overage_price text;
ALTER TABLE plans ADD COLUMN meter_event_name text;

ALTER TABLE plans ADD CONSTRAINT plans_overage_both
    CHECK ((overage_price IS NULL) = (meter_event_name IS NULL));


ALTER TABLE quota_usage ADD COLUMN overage bigint NOT NULL DEFAULT 0;
ALTER TABLE quota_usage ADD COLUMN overage_reported bigint NOT NULL DEFAULT 0;
-- the meter of the plan that let the last one through, and when
ALTER TABLE quota_usage ADD COLUMN overage_event text;
ALTER TABLE quota_usage ADD COLUMN overage_at timestamptz;
ALTER TABLE quota_usage ADD COLUMN reported_at timestamptz;

CREATE INDEX quota_usage_unreported ON quota_usage (reported_at NULLS FIRST)
    WHERE overage > overage_reported;


ALTER TABLE gate_calls DROP CONSTRAINT gate_calls_outcome_check;

ALTER TABLE gate_calls ADD CONSTRAINT gate_calls_outcome_check
    CHECK (outcome IN ('credits', 'quota', 'overage', 'void'));


-- The gate's charge for a batch of calls: sql/005's, with one more outcome
-- where the quota applies and is used up, before credits are looked at:
--
--   quota used up, the plan  overage (counted in quota_usage, calls and
--     has a meter              overage; no credits; quota_remaining 0)
--
-- The rest is 005's, unchanged: the locks in uuid order, what the batch
-- already did read under them, and a gate_calls row per admitted call.
CREATE OR REPLACE FUNCTION monetize_debit(p_users uuid[], p_keys uuid[],
                                          p_costs bigint[], p_refs text[],
                                          p_quota boolean[],
                                          p_retry boolean)
RETURNS TABLE (idx integer, outcome text, balance bigint,
               quota_remaining bigint, period_end bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n           integer := coalesce(array_length(p_users, 1), 0);
    v_user      uuid;
    v_users     uuid[] := '{}';
    v_balances  bigint[] := '{}';
    v_balance   bigint;
    v_quota     bigint;         -- the plan's monthly calls; NULL: unlimited
    v_meter     text;           -- its meter event name; NULL: no overage
    v_start     timestamptz;    -- of the billing period
    v_finish    timestamptz;
    v_used      bigint;
    v_now       timestamptz;
    v_done      text[];
    v_done_out  text[];
    v_key_ids   uuid[];
    v_key_users uuid[];
    v_revoked   uuid[];
    v_expired   uuid[];
    v_suspended uuid[];
    v_outcome   text[] := array_fill(NULL::text, ARRAY[n]);
    v_after     bigint[] := array_fill(0::bigint, ARRAY[n]);
    v_left      bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_end       bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_period    timestamptz[] := array_fill(NULL::timestamptz, ARRAY[n]);
    v_new       boolean[] := array_fill(false, ARRAY[n]);
    v_counted   bigint;
    v_over      bigint;
    v_key       uuid;
    v_pos       integer;
    u           integer;
    i           integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;

    FOR v_user IN SELECT DISTINCT x FROM unnest(p_users) AS x ORDER BY x
    LOOP
        v_users := v_users || v_user;
        v_balances := v_balances || monetize_lock_account(v_user);
    END LOOP;

    v_now := clock_timestamp();

    -- "= ANY (array)" is planned at each call (EXECUTE): a plan cached
    -- while a table was small would scan all of it ever after

    EXECUTE 'SELECT coalesce(array_agg(c.reference), ''{}''),'
         || '       coalesce(array_agg(CASE WHEN c.voided_at IS NULL'
         || '                          THEN c.outcome ELSE ''void'''
         || '                          END), ''{}'')'
         || '  FROM gate_calls c WHERE c.reference = ANY ($1)'
       INTO v_done, v_done_out USING p_refs;

    EXECUTE 'SELECT coalesce(array_agg(a.id), ''{}''),'
         || '       coalesce(array_agg(a.user_id), ''{}''),'
         || '       coalesce(array_agg(a.id) FILTER'
         || '                (WHERE a.revoked_at IS NOT NULL), ''{}''),'
         || '       coalesce(array_agg(a.id) FILTER'
         || '                (WHERE a.expires_at <= $2), ''{}'')'
         || '  FROM api_keys a WHERE a.id = ANY ($1)'
       INTO v_key_ids, v_key_users, v_revoked, v_expired
       USING p_keys, v_now;

    EXECUTE 'SELECT coalesce(array_agg(s.id), ''{}'') FROM users s'
         || ' WHERE s.id = ANY ($1) AND s.suspended_at IS NOT NULL'
       INTO v_suspended USING v_users;

    FOR u IN 1 .. array_length(v_users, 1) LOOP
        v_user := v_users[u];
        v_balance := v_balances[u];
        v_quota := NULL;
        v_meter := NULL;
        v_used := NULL;
        v_counted := 0;
        v_over := 0;

        FOR i IN 1 .. n LOOP
            CONTINUE WHEN p_users[i] <> v_user;

            IF p_quota[i] AND v_used IS NULL THEN
                SELECT o.monthly_quota, o.period_start, o.period_end,
                       p.meter_event_name
                  INTO v_quota, v_start, v_finish, v_meter
                  FROM monetize_plan_of(v_user) AS o
                  JOIN plans p ON p.id = o.plan_id;

                INSERT INTO quota_usage AS q (user_id, period_start)
                VALUES (v_user, v_start)
                ON CONFLICT (user_id, period_start) DO NOTHING;

                SELECT q.calls INTO v_used FROM quota_usage q
                 WHERE q.user_id = v_user AND q.period_start = v_start;
            END IF;

            v_pos := array_position(v_done, p_refs[i]);

            IF v_pos IS NOT NULL THEN
                v_outcome[i] := v_done_out[v_pos];

            -- the nil UUID: a call made with a session token (sql/009),
            -- which no api_keys row has; only its account is checked
            ELSIF p_keys[i] <> '00000000-0000-0000-0000-000000000000'
                  AND (v_key_users[array_position(v_key_ids, p_keys[i])]
                           IS DISTINCT FROM v_user
                       OR p_keys[i] = ANY (v_revoked))
            THEN
                v_outcome[i] := 'key_revoked';

            ELSIF p_keys[i] = ANY (v_expired) THEN
                v_outcome[i] := 'key_expired';

            ELSIF v_user = ANY (v_suspended) THEN
                v_outcome[i] := 'account_suspended';

            ELSIF p_quota[i]
                  AND (v_quota IS NULL OR v_used + v_counted < v_quota)
            THEN
                v_counted := v_counted + 1;
                v_outcome[i] := 'quota';
                v_period[i] := v_start;

            ELSIF p_quota[i] AND v_meter IS NOT NULL THEN
                v_counted := v_counted + 1;
                v_over := v_over + 1;
                v_outcome[i] := 'overage';
                v_period[i] := v_start;

            ELSIF p_quota[i] AND p_costs[i] = 0 THEN
                v_outcome[i] := 'quota_exceeded';

            ELSIF p_costs[i] <= v_balance THEN
                v_balance := v_balance - p_costs[i];
                v_outcome[i] := 'credits';

            ELSE
                v_outcome[i] := 'insufficient_credits';
            END IF;

            IF v_pos IS NULL
               AND v_outcome[i] IN ('credits', 'quota', 'overage')
            THEN
                v_new[i] := true;
                v_done := v_done || p_refs[i];
                v_done_out := v_done_out || v_outcome[i];
            END IF;

            v_after[i] := v_balance;

            IF p_quota[i] THEN
                -- NULL for an unlimited plan
                v_left[i] := CASE WHEN v_quota IS NOT NULL
                                  THEN greatest(v_quota - v_used - v_counted,
                                                0) END;
                v_end[i] := extract(epoch FROM v_finish)::bigint;
            END IF;
        END LOOP;

        UPDATE balances b SET balance = v_balance, updated_at = now()
         WHERE b.user_id = v_user AND b.balance <> v_balance;

        IF v_over > 0 THEN
            UPDATE quota_usage q SET calls = q.calls + v_counted,
                                     overage = q.overage + v_over,
                                     overage_event = v_meter,
                                     overage_at = v_now
             WHERE q.user_id = v_user AND q.period_start = v_start;

        ELSIF v_counted > 0 THEN
            UPDATE quota_usage q SET calls = q.calls + v_counted
             WHERE q.user_id = v_user AND q.period_start = v_start;
        END IF;
    END LOOP;

    INSERT INTO credit_ledger (user_id, delta, kind, reference, api_key_id,
                               balance_after)
    SELECT p_users[k], -p_costs[k], 'debit', p_refs[k], p_keys[k], v_after[k]
      FROM generate_subscripts(p_users, 1) AS k
     WHERE v_new[k] AND v_outcome[k] = 'credits' AND p_costs[k] > 0;

    INSERT INTO gate_calls (reference, user_id, outcome, cost, period_start)
    SELECT p_refs[k], p_users[k], v_outcome[k],
           CASE WHEN v_outcome[k] = 'credits' THEN p_costs[k] ELSE 0 END,
           v_period[k]
      FROM generate_subscripts(p_users, 1) AS k
     WHERE v_new[k];

    -- fresh enough for a listing, at most one write per key a minute
    FOR v_key IN SELECT DISTINCT k FROM unnest(p_keys) AS k LOOP
        UPDATE api_keys a SET last_used_at = now()
         WHERE a.id = v_key
           AND (a.last_used_at IS NULL
                OR a.last_used_at < now() - interval '1 minute');
    END LOOP;

    RETURN QUERY SELECT k, v_outcome[k], v_after[k], v_left[k], v_end[k]
                   FROM generate_subscripts(p_users, 1) AS k;
END
$$;


-- sql/005's void, with overage calls given back like included ones (to
-- calls and to overage: result 'overage_returned').
CREATE OR REPLACE FUNCTION monetize_void(p_users uuid[], p_refs text[])
RETURNS TABLE (reference text, result text)
LANGUAGE plpgsql AS $$
DECLARE
    n        integer := coalesce(array_length(p_users, 1), 0);
    v_user   uuid;
    v_call   gate_calls%ROWTYPE;
    v_debit  credit_ledger%ROWTYPE;
    v_res    text[] := array_fill(NULL::text, ARRAY[n]);
    i        integer;
BEGIN
    FOR v_user IN SELECT DISTINCT u FROM unnest(p_users) AS u ORDER BY u
    LOOP
        PERFORM monetize_lock_account(v_user);

        FOR i IN 1 .. n LOOP
            CONTINUE WHEN p_users[i] <> v_user;

            SELECT * INTO v_call FROM gate_calls c
             WHERE c.reference = p_refs[i];

            IF NOT FOUND THEN
                INSERT INTO gate_calls (reference, user_id, outcome)
                VALUES (p_refs[i], v_user, 'void');
                v_res[i] := 'voided';
                CONTINUE;
            END IF;

            IF v_call.outcome = 'void' OR v_call.voided_at IS NOT NULL
               OR v_call.user_id <> v_user
            THEN
                v_res[i] := 'already';
                CONTINUE;
            END IF;

            IF v_call.outcome = 'quota' THEN
                UPDATE quota_usage q SET calls = q.calls - 1
                 WHERE q.user_id = v_user
                   AND q.period_start = v_call.period_start
                   AND q.calls > 0;
                v_res[i] := 'quota_returned';

            ELSIF v_call.outcome = 'overage' THEN
                UPDATE quota_usage q SET calls = q.calls - 1,
                                         overage = q.overage - 1
                 WHERE q.user_id = v_user
                   AND q.period_start = v_call.period_start
                   AND q.calls > 0 AND q.overage > 0;
                v_res[i] := 'overage_returned';

            ELSE
                SELECT * INTO v_debit FROM credit_ledger l
                 WHERE l.reference = p_refs[i] AND l.kind = 'debit';

                IF FOUND AND NOT EXISTS (
                       SELECT 1 FROM credit_ledger r
                        WHERE r.reference = 'refund:' || p_refs[i])
                THEN
                    PERFORM monetize_credit(v_user, -v_debit.delta,
                                'write_off', 'write_off:' || p_refs[i],
                                v_debit.api_key_id,
                                jsonb_build_object('debit', p_refs[i]));
                END IF;

                v_res[i] := 'written_off';
            END IF;

            UPDATE gate_calls c SET voided_at = now()
             WHERE c.reference = p_refs[i];
        END LOOP;
    END LOOP;

    RETURN QUERY SELECT p_refs[k], v_res[k]
                   FROM generate_subscripts(p_users, 1) AS k;
END
$$;


-- Reporting, run by every worker's sweep: for at most p_limit accounts'
-- periods whose overage is not all reported, and last reported at least
-- p_interval seconds ago, record it as reported and queue one
-- "meter_event" job for it, in this one transaction. Returns how many
-- were queued.
--
-- A row a debit holds is skipped, not waited for (SKIP LOCKED): the
-- report takes no account's lock, so it cannot join the money statements'
-- lock order, and the row comes back at the next sweep. Two sweeps at once
-- take different rows.
CREATE FUNCTION monetize_overage_report(p_interval integer, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_row    quota_usage%ROWTYPE;
    v_id     text;
    v_n      integer := 0;
BEGIN
    FOR v_row IN
        SELECT * FROM quota_usage q
         WHERE q.overage > q.overage_reported
           AND (q.reported_at IS NULL
                OR q.reported_at
                   <= now() - make_interval(secs => p_interval))
         ORDER BY q.reported_at NULLS FIRST
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        v_id := v_row.user_id || ':'
             || extract(epoch FROM v_row.period_start)::bigint || ':'
             || v_row.overage_reported + 1 || '-' || v_row.overage;

        UPDATE quota_usage q SET overage_reported = v_row.overage,
                                 reported_at = now()
         WHERE q.user_id = v_row.user_id
           AND q.period_start = v_row.period_start;

        -- the event's time is the last call's, inside the period it bills
        IF monetize_job_enqueue('meter_event', v_row.user_id,
               jsonb_build_object(
                   'identifier', v_id,
                   'event_name', v_row.overage_event,
                   'value', v_row.overage - v_row.overage_reported,
                   'timestamp',
                   extract(epoch FROM v_row.overage_at)::bigint,
                   'period_start',
                   extract(epoch FROM v_row.period_start)::bigint),
               v_id) IS NULL
        THEN
            -- a range once queued is never taken again: should it be,
            -- nothing is recorded rather than a report lost
            RAISE EXCEPTION 'monetize: meter event % queued twice', v_id;
        END IF;

        v_n := v_n + 1;
    END LOOP;

    RETURN v_n;
END
$$;


-- GET /me: sql/010's document, with the overage of the period so far:
-- "overage": {"billed" (the plan has a meter), "calls" (past the quota),
-- "reported" (of them, sent to Stripe or queued to be)}.
CREATE OR REPLACE FUNCTION monetize_me_json(p_user uuid)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'user', json_build_object(
            'id', u.id, 'email', u.email, 'name', u.name,
            'email_verified', u.email_verified, 'is_admin', u.is_admin,
            'created_at', monetize_iso8601(u.created_at)),
        'plan', json_build_object(
            'id', p.id, 'name', p.name, 'monthly_quota', p.monthly_quota,
            'rate_limit', json_build_object(
                'requests_per_second', p.rate_limit_rps,
                'burst', p.rate_limit_burst)),
        'subscription', (
            SELECT json_build_object(
                       'id', s.id, 'plan', s.plan_id, 'status', s.status,
                       'current_period_start',
                       monetize_iso8601(s.current_period_start),
                       'current_period_end',
                       monetize_iso8601(s.current_period_end),
                       'cancel_at_period_end', s.cancel_at_period_end)
              FROM subscriptions s
             WHERE s.user_id = u.id AND s.stripe_subscription_id IS NOT NULL
               AND s.status IN ('active', 'trialing', 'past_due')
             ORDER BY s.current_period_end DESC NULLS LAST
             LIMIT 1),
        'balance', coalesce(b.balance, 0),
        'period', json_build_object(
            'start', monetize_iso8601(o.period_start),
            'end', monetize_iso8601(o.period_end),
            'calls', coalesce(us.calls, 0),
            'credits', coalesce(us.credits, 0)),
        'quota', json_build_object(
            'limit', o.monthly_quota,
            'used', coalesce(q.calls, 0),
            'remaining', CASE WHEN o.monthly_quota IS NOT NULL
                              THEN greatest(o.monthly_quota
                                            - coalesce(q.calls, 0), 0)
                              END),
        'overage', json_build_object(
            'billed', p.meter_event_name IS NOT NULL,
            'calls', coalesce(q.overage, 0),
            'reported', least(coalesce(q.overage_reported, 0),
                              coalesce(q.overage, 0))),
        'keys', json_build_object(
            'active', monetize_active_keys(u.id, NULL),
            'total', (SELECT count(*) FROM api_keys k
                       WHERE k.user_id = u.id)))
      FROM users u
     CROSS JOIN LATERAL monetize_plan_of(u.id) AS o
      JOIN plans p ON p.id = o.plan_id
      LEFT JOIN balances b ON b.user_id = u.id
      LEFT JOIN quota_usage q
             ON q.user_id = u.id AND q.period_start = o.period_start
      LEFT JOIN LATERAL (
            SELECT sum(x.calls)::bigint AS calls,
                   sum(x.credits)::bigint AS credits
              FROM usage x
             WHERE x.user_id = u.id
               AND x.day >= (o.period_start AT TIME ZONE 'UTC')::date
               AND x.day < (o.period_end AT TIME ZONE 'UTC')::date) AS us
             ON true
     WHERE u.id = p_user
$$;
