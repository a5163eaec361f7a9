-- nginx-monetize: the gate's money path, exact under retries, lost answers
-- and write-offs.
--
-- Every call the gate admits leaves a row in gate_calls, whatever paid for
-- it (credits, the plan's included calls), written in the transaction of
-- its debit. A batch sent again after a lost answer reads those rows AFTER
-- taking each account's lock, so it sees what a first attempt committed
-- while it waited, and debits nothing twice. A call whose outcome stayed
-- unknown is voided: a gate_calls row of its own (outcome 'void') when no
-- debit was made yet, which a later debit of the same reference refuses;
-- or, when the debit did commit, a 'write_off' ledger entry that gives its
-- credits back (or gives its included call back to the quota). Both take
-- the account's lock, so whichever comes second loses.
--
-- Lock order: every money statement locks accounts (their balances row) in
-- uuid order and takes no other account lock after one of a greater uuid.


ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;

ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('signup', 'purchase', 'debit', 'refund', 'use_credit',
                    'admin', 'subscription', 'write_off'));


-- No foreign key on user_id: its check would lock the users row once per
-- call; the ledger's debits already refer to the account.
CREATE TABLE gate_calls (
    reference           text PRIMARY KEY,       -- "call:<request id>"
    user_id             uuid NOT NULL,
    outcome             text NOT NULL
                        CHECK (outcome IN ('credits', 'quota', 'void')),
    cost                bigint NOT NULL DEFAULT 0,
    period_start        timestamptz,            -- of the quota it counted in
    voided_at           timestamptz,            -- written off after admission
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX gate_calls_user ON gate_calls (user_id, created_at);


-- The account's lock: its balances row, made if missing. Returns the
-- balance.
CREATE FUNCTION monetize_lock_account(p_user uuid)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_balance  bigint;
BEGIN
    SELECT b.balance INTO v_balance FROM balances b
     WHERE b.user_id = p_user FOR UPDATE;

    IF NOT FOUND THEN
        INSERT INTO balances (user_id) VALUES (p_user)
            ON CONFLICT ON CONSTRAINT balances_pkey DO NOTHING;

        SELECT b.balance INTO v_balance FROM balances b
         WHERE b.user_id = p_user FOR UPDATE;
    END IF;

    RETURN coalesce(v_balance, 0);
END
$$;


-- The gate's charge for a batch of calls. Lock the batch's accounts, in
-- uuid order; then read (under the locks, with the database's clock) what
-- this batch already did, its keys and its suspended accounts, in three
-- statements for the whole batch; then for each account, each of its
-- calls in arrival order:
--
--   already recorded        its recorded outcome ('void' if voided)
--   key revoked or gone     key_revoked
--   key expired             key_expired
--   account suspended       account_suspended
--   quota applies, calls    quota (counted in quota_usage)
--     left
--   quota used up, cost 0   quota_exceeded (nothing else can pay)
--   balance pays            credits (a ledger row when cost > 0)
--   else                    insufficient_credits
--
-- Where the quota applies, quota_remaining and period_end are returned
-- with every outcome, 0 and the period's end when it is used up.
-- p_retry is kept for the callers' signature: the recorded outcomes are
-- read on every send, since a void may precede a first send's lock.
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
        v_used := NULL;
        v_counted := 0;

        FOR i IN 1 .. n LOOP
            CONTINUE WHEN p_users[i] <> v_user;

            IF p_quota[i] AND v_used IS NULL THEN
                SELECT o.monthly_quota, o.period_start, o.period_end
                  INTO v_quota, v_start, v_finish
                  FROM monetize_plan_of(v_user) AS o;

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

            ELSIF p_quota[i] AND p_costs[i] = 0 THEN
                v_outcome[i] := 'quota_exceeded';

            ELSIF p_costs[i] <= v_balance THEN
                v_balance := v_balance - p_costs[i];
                v_outcome[i] := 'credits';

            ELSE
                v_outcome[i] := 'insufficient_credits';
            END IF;

            IF v_pos IS NULL AND v_outcome[i] IN ('credits', 'quota') THEN
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

        IF v_counted > 0 THEN
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


-- Voids the calls of a batch whose outcome stayed unknown (answered 503 to
-- their clients). Under each account's lock, in uuid order: a call not
-- debited (yet) gets a 'void' row, which the late debit, if any, then finds
-- and refuses; a call debited with credits is written off (a 'write_off'
-- entry giving its cost back, reference "write_off:<call>"); one counted
-- against the quota gives its call back to its period. Each once.
CREATE FUNCTION monetize_void(p_users uuid[], p_refs text[])
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


-- Refunds of calls whose upstream failed: each refers to its debit, once.
-- The accounts are locked in uuid order first, as every money statement
-- does; a refund whose debit is not in the ledger, or whose call was
-- written off, is skipped.
CREATE OR REPLACE FUNCTION monetize_refund(p_debit_refs text[])
RETURNS TABLE (reference text, applied boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_user   uuid;
    v_ref    text;
    v_debit  credit_ledger%ROWTYPE;
    v_res    record;
BEGIN
    FOR v_user IN EXECUTE
        'SELECT DISTINCT l.user_id FROM credit_ledger l'
     || ' WHERE l.reference = ANY ($1) AND l.kind = ''debit'''
     || ' ORDER BY l.user_id' USING p_debit_refs
    LOOP
        PERFORM monetize_lock_account(v_user);
    END LOOP;

    FOREACH v_ref IN ARRAY p_debit_refs LOOP
        SELECT * INTO v_debit FROM credit_ledger l
         WHERE l.reference = v_ref AND l.kind = 'debit';

        IF NOT FOUND OR EXISTS (
               SELECT 1 FROM gate_calls c
                WHERE c.reference = v_ref AND c.voided_at IS NOT NULL)
        THEN
            RETURN QUERY SELECT v_ref, false;
            CONTINUE;
        END IF;

        SELECT * INTO v_res
          FROM monetize_credit(v_debit.user_id, -v_debit.delta, 'refund',
                               'refund:' || v_ref, v_debit.api_key_id,
                               jsonb_build_object('debit', v_ref));

        RETURN QUERY SELECT v_ref, v_res.applied;
    END LOOP;
END
$$;
