-- nginx-monetize: what the billing endpoints read (POST /purchase_credits,
-- POST /billing/checkout, GET /billing/status, GET /plans).


-- GET /plans, now with "buyable": a pack can be bought whenever Stripe is
-- configured (the checkout prices it from price_cents when it has no
-- stripe_price_id); a plan only when it has a stripe_price_id and is not
-- the free plan (every account has that one without paying). The caller
-- says whether Stripe is configured: that is nginx's configuration, not
-- the database's. With monetize.test_hold on, it takes advisory lock 60062
-- after it read them (see monetize_gate_key).
DROP FUNCTION monetize_plans_json();

CREATE FUNCTION monetize_plans_json(p_stripe boolean)
RETURNS json
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
                       'burst', p.rate_limit_burst),
                   'buyable', p_stripe AND p.id <> 'free'
                              AND p.stripe_price_id IS NOT NULL)
                   ORDER BY p.sort_order, p.id), '[]')
                FROM plans p WHERE p.active),
      'credit_packs', (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'name', c.name, 'credits', c.credits,
                   'price_cents', c.price_cents, 'currency', c.currency,
                   'buyable', p_stripe)
                   ORDER BY c.sort_order, c.id), '[]')
                FROM credit_packs c WHERE c.active))
      INTO v_json;

    IF current_setting('monetize.test_hold', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock(60062);
    END IF;

    RETURN v_json;
END
$$;


-- POST /purchase_credits {"pack"}: the active pack, as the checkout prices
-- it (no row: no such pack).
CREATE FUNCTION monetize_checkout_pack(p_pack text)
RETURNS TABLE (id text, name text, credits bigint, price_cents integer,
               currency text, stripe_price_id text)
LANGUAGE sql STABLE AS $$
    SELECT c.id, c.name, c.credits, c.price_cents, c.currency,
           c.stripe_price_id
      FROM credit_packs c
     WHERE c.id = p_pack AND c.active;
$$;


-- POST /billing/checkout {"plan"}: the active plan and its Stripe price
-- (NULL: it cannot be bought); no row: no such plan.
CREATE FUNCTION monetize_checkout_plan(p_plan text, p_user uuid)
RETURNS TABLE (id text, stripe_price_id text, subscribed text)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.stripe_price_id,
           (SELECT s.plan_id
              FROM subscriptions s
             WHERE s.user_id = p_user
               AND s.stripe_subscription_id IS NOT NULL
               AND s.status IN ('active', 'trialing', 'past_due')
               AND (s.current_period_end IS NULL
                    OR s.current_period_end > now())
             ORDER BY s.current_period_end DESC NULLS LAST
             LIMIT 1)
      FROM plans p
     WHERE p.id = p_plan AND p.active;
$$;


-- GET /billing/status: the plan the account has now (monetize_plan_of,
-- the free plan when no subscription is current), and the state of its
-- subscription: the current one, else the latest one (e.g. canceled,
-- incomplete), else "none". current_period_end is the end of the period the
-- quota counts (the calendar month on the free plan).
CREATE FUNCTION monetize_billing_status(p_user uuid)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'plan', o.plan_id,
        'status', coalesce(cur.status, last.status, 'none'),
        'current_period_start', monetize_iso8601(o.period_start),
        'current_period_end', monetize_iso8601(o.period_end),
        'cancel_at_period_end', coalesce(cur.cancel_at_period_end, false))
      FROM users u
     CROSS JOIN monetize_plan_of(u.id) AS o
      LEFT JOIN LATERAL (
            SELECT s.status, s.cancel_at_period_end
              FROM subscriptions s
             WHERE s.user_id = u.id
               AND s.status IN ('active', 'trialing', 'past_due')
               AND (s.current_period_end IS NULL
                    OR s.current_period_end > now())
             ORDER BY s.current_period_end DESC NULLS LAST
             LIMIT 1) AS cur ON true
      LEFT JOIN LATERAL (
            SELECT s.status
              FROM subscriptions s
             WHERE s.user_id = u.id
             ORDER BY s.updated_at DESC, s.created_at DESC
             LIMIT 1) AS last ON true
     WHERE u.id = p_user;
$$;
