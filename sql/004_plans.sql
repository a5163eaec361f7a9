-- nginx-monetize: plans, monthly quotas, credit packs.
--
-- A plan gives a rate limit (requests_per_second, burst) and a monthly quota
-- of included calls (NULL: unlimited). Where a location enforces quotas, a
-- call is covered by the plan's included calls first, then paid with
-- prepaid credits; the calls are counted in quota_usage, per account and
-- billing period, in the same transaction as the debits: exact across
-- workers and nodes.


CREATE TABLE credit_packs (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    credits             bigint NOT NULL CHECK (credits > 0),
    price_cents         integer NOT NULL CHECK (price_cents >= 0),
    currency            text NOT NULL DEFAULT 'usd',
    stripe_price_id     text,
    sort_order          integer NOT NULL DEFAULT 0,
    active              boolean NOT NULL DEFAULT true
);

INSERT INTO credit_packs (id, name, credits, price_cents, sort_order)
VALUES ('small',  '1,000 credits',     1000,   1000, 0),
       ('medium', '10,000 credits',   10000,   8000, 1),
       ('large',  '100,000 credits', 100000,  60000, 2);


CREATE TABLE quota_usage (
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    period_start        timestamptz NOT NULL,
    calls               bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, period_start)
);


-- The account's plan and billing period now: its active subscription's, or
-- the free plan and the calendar month (UTC).
CREATE FUNCTION monetize_plan_of(p_user uuid)
RETURNS TABLE (plan_id text, monthly_quota bigint, period_start timestamptz,
               period_end timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.monthly_quota,
           coalesce(s.current_period_start,
                    date_trunc('month', now() AT TIME ZONE 'UTC')
                        AT TIME ZONE 'UTC'),
           coalesce(s.current_period_end,
                    (date_trunc('month', now() AT TIME ZONE 'UTC')
                        + interval '1 month') AT TIME ZONE 'UTC')
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (
            SELECT s.plan_id, s.current_period_start, s.current_period_end
              FROM subscriptions s
             WHERE s.user_id = p_user
               AND s.status IN ('active', 'trialing', 'past_due')
               AND (s.current_period_end IS NULL
                    OR s.current_period_end > now())
             ORDER BY s.current_period_end DESC NULLS LAST
             LIMIT 1) AS s ON true
      JOIN plans p ON p.id = coalesce(s.plan_id, 'free');
$$;


-- The gate's charge for a batch of calls. For each account, in a fixed
-- order, lock its balance, then for each of its calls in arrival order:
-- where the location enforces the quota (p_quota) and included calls are
-- left, count it against the quota; else pay it with credits if the balance
-- can; else refuse it (quota_exceeded where the quota applied, else
-- insufficient_credits). One ledger row per call paid with credits.
-- p_retry: the batch was sent before and its answer lost; the calls it
-- already debited are admitted, not debited again (on a first send the
-- references are new, and the ledger's unique reference would refuse a
-- second debit anyway).
DROP FUNCTION monetize_debit(uuid[], uuid[], bigint[], text[]);

CREATE FUNCTION monetize_debit(p_users uuid[], p_keys uuid[],
                               p_costs bigint[], p_refs text[],
                               p_quota boolean[], p_retry boolean)
RETURNS TABLE (idx integer, outcome text, balance bigint,
               quota_remaining bigint, period_end bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := coalesce(array_length(p_users, 1), 0);
    v_user     uuid;
    v_balance  bigint;
    v_quota    bigint;         -- the plan's monthly calls; NULL: unlimited
    v_start    timestamptz;    -- of the billing period
    v_finish   timestamptz;
    v_used     bigint;
    v_done     text[];
    v_outcome  text[] := array_fill(NULL::text, ARRAY[n]);
    v_new      boolean[] := array_fill(false, ARRAY[n]);
    v_after    bigint[] := array_fill(0::bigint, ARRAY[n]);
    v_left     bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_end      bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    v_counted  bigint;
    v_key      uuid;
    i          integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;

    v_done := '{}';

    -- "= ANY (array)" is planned at each call (EXECUTE): a plan cached
    -- while the table was small would scan all of it ever after; the other
    -- statements look rows up by their key, which any plan does by index

    IF p_retry THEN
        EXECUTE 'SELECT coalesce(array_agg(l.reference), ''{}'')'
             || '  FROM credit_ledger l WHERE l.reference = ANY ($1)'
           INTO v_done USING p_refs;
    END IF;

    FOR v_user IN SELECT DISTINCT u FROM unnest(p_users) AS u ORDER BY u
    LOOP
        -- the account's lock, for its balance and its quota alike: the row
        -- must exist to be locked
        SELECT b.balance INTO v_balance FROM balances b
         WHERE b.user_id = v_user FOR UPDATE;

        IF NOT FOUND THEN
            INSERT INTO balances (user_id) VALUES (v_user)
                ON CONFLICT ON CONSTRAINT balances_pkey DO NOTHING;

            SELECT b.balance INTO v_balance FROM balances b
             WHERE b.user_id = v_user FOR UPDATE;
        END IF;

        v_balance := coalesce(v_balance, 0);
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

            IF p_refs[i] = ANY (v_done) THEN
                v_outcome[i] := 'credits';

            ELSIF p_quota[i]
                  AND (v_quota IS NULL OR v_used + v_counted < v_quota)
            THEN
                v_counted := v_counted + 1;
                v_outcome[i] := 'quota';

            ELSIF p_costs[i] <= v_balance THEN
                v_balance := v_balance - p_costs[i];
                v_outcome[i] := 'credits';
                v_new[i] := p_costs[i] > 0;

            ELSIF p_quota[i] THEN
                v_outcome[i] := 'quota_exceeded';

            ELSE
                v_outcome[i] := 'insufficient_credits';
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


-- What the gates cache of a key includes its plan: a change of plan, or of
-- an account's subscription, is notified like a revocation.
CREATE FUNCTION monetize_notify_plans() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monetize_plans', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER plans_notify
    AFTER INSERT OR UPDATE OR DELETE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION monetize_notify_plans();

CREATE FUNCTION monetize_notify_subscription() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('monetize_users', OLD.user_id::text);
    END IF;

    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('monetize_users', NEW.user_id::text);
    END IF;

    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_notify
    AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION monetize_notify_subscription();
