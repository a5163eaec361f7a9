-- nginx-monetize: Stripe's webhooks, each event applied exactly once.
--
-- POST /webhooks/stripe verifies the signature, then runs
-- monetize_stripe_event() on the event as one transaction: the event is
-- recorded by its id in webhook_events and applied in the same
-- transaction. A redelivery finds the row and changes nothing; two workers
-- or nodes given the same event at once insert the same primary key, so
-- the second waits for the first to commit and then finds it (or, if the
-- first rolled back, applies it itself). The answer is sent after the
-- commit, so Stripe retries whatever did not commit.
--
-- Money: a purchase is granted under the reference
-- "stripe:checkout:<session id>", whichever event grants it
-- (checkout.session.completed or async_payment_succeeded), so it is
-- granted once. A refund takes back the credits of the purchase the charge
-- paid for (found by its payment_intent), in proportion to the amount
-- refunded, never below a balance of zero: what could not be taken is the
-- shortfall, in the ledger row's metadata and in the audit log.
--
-- Subscriptions: each row keeps the "created" of the last event applied to
-- it; an older event (Stripe does not promise order) changes nothing.
-- Lock order: an account's balances row, then its subscription or refund
-- row, as every money statement does (005).


ALTER TABLE webhook_events ADD COLUMN created bigint;     -- Stripe's clock
ALTER TABLE webhook_events ADD COLUMN outcome text;       -- what it did

ALTER TABLE subscriptions ADD COLUMN stripe_event_created bigint;

ALTER TABLE subscriptions DROP CONSTRAINT subscriptions_status_check;

ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_status_check
    CHECK (status IN ('incomplete', 'incomplete_expired', 'trialing',
                      'active', 'past_due', 'canceled', 'unpaid',
                      'paused'));

-- The credits a refunded purchase takes back: 'purchase_refund' (negative).
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;

ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('signup', 'purchase', 'debit', 'refund', 'use_credit',
                    'admin', 'subscription', 'write_off', 'grant',
                    'adjustment', 'purchase_refund'));

CREATE INDEX credit_ledger_payment_intent
    ON credit_ledger ((metadata->>'payment_intent'))
    WHERE kind = 'purchase';


-- What the refunds of one charge have taken back so far: "wanted" in
-- proportion to the amount refunded, "taken" what the balance could give.
CREATE TABLE stripe_charge_refunds (
    charge_id           text PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    purchase            text NOT NULL,          -- the grant's reference
    amount_refunded     bigint NOT NULL DEFAULT 0,
    credits_wanted      bigint NOT NULL DEFAULT 0,
    credits_taken       bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);


-- A subscription in Stripe's words: a plan until its paid period ends,
-- canceled ones included ("deleted": back to free at the period's end),
-- after any that is not canceled.
CREATE OR REPLACE FUNCTION monetize_plan_of(p_user uuid)
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
               AND (s.status IN ('active', 'trialing', 'past_due')
                    AND (s.current_period_end IS NULL
                         OR s.current_period_end > now())
                    OR s.status = 'canceled'
                       AND s.current_period_end > now())
             ORDER BY s.status = 'canceled',
                      s.current_period_end DESC NULLS LAST
             LIMIT 1) AS s ON true
      JOIN plans p ON p.id = coalesce(s.plan_id, 'free');
$$;


CREATE FUNCTION monetize_stripe_time(p_value jsonb) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(p_value) = 'number'
                THEN to_timestamp((p_value #>> '{}')::double precision)
           END;
$$;


-- The account an object of Stripe's names: its metadata.user_id (what
-- checkout puts there, and subscription_data[metadata] on subscriptions),
-- its client_reference_id, or its customer through users.
-- NULL when none exists.
CREATE FUNCTION monetize_stripe_user(p_obj jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id    text;
    v_user  uuid;
BEGIN
    FOREACH v_id IN ARRAY ARRAY[p_obj->'metadata'->>'user_id',
                                p_obj->>'client_reference_id']
    LOOP
        IF v_id ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' THEN
            SELECT u.id INTO v_user FROM users u WHERE u.id = v_id::uuid;

            IF FOUND THEN
                RETURN v_user;
            END IF;
        END IF;
    END LOOP;

    SELECT u.id INTO v_user FROM users u
     WHERE u.stripe_customer_id = p_obj->>'customer';

    RETURN v_user;
END
$$;


-- users.stripe_customer_id is set once, and only to a customer no other
-- account has.
CREATE FUNCTION monetize_stripe_link_customer(p_user uuid, p_customer text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE users u SET stripe_customer_id = p_customer, updated_at = now()
     WHERE u.id = p_user AND u.stripe_customer_id IS NULL
       AND p_customer IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM users o
                        WHERE o.stripe_customer_id = p_customer);
$$;


-- checkout.session.completed, async_payment_succeeded and _failed.
CREATE FUNCTION monetize_stripe_checkout(p_event jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_obj      jsonb := p_event->'data'->'object';
    v_type     text := p_event->>'type';
    v_user     uuid;
    v_credits  bigint;
    v_plan     text;
    v_status   text;
    v_applied  boolean;
BEGIN
    v_user := monetize_stripe_user(v_obj);

    IF v_user IS NULL THEN
        RETURN 'ignored: no account for this session';
    END IF;

    PERFORM monetize_stripe_link_customer(v_user, v_obj->>'customer');

    IF v_type = 'checkout.session.async_payment_failed' THEN
        PERFORM monetize_audit(NULL, 'stripe.payment_failed',
                               'checkout:' || (v_obj->>'id'), v_user,
                               jsonb_build_object('session', v_obj->>'id',
                                                  'event', p_event->>'id'),
                               NULL);
        RETURN 'payment failed';
    END IF;

    IF v_obj->>'mode' = 'subscription' THEN
        v_plan := v_obj->'metadata'->>'plan';

        IF v_obj->>'subscription' IS NULL
           OR NOT EXISTS (SELECT 1 FROM plans p WHERE p.id = v_plan)
        THEN
            RETURN 'ignored: no subscription or no such plan';
        END IF;

        v_status := CASE WHEN v_obj->>'payment_status'
                                  IN ('paid', 'no_payment_required')
                         THEN 'active' ELSE 'incomplete' END;

        PERFORM monetize_lock_account(v_user);

        -- the subscription's own events say its period and state; this
        -- links it to the account, and never overwrites what they said
        INSERT INTO subscriptions (user_id, plan_id, status,
                                   stripe_subscription_id)
        VALUES (v_user, v_plan, v_status, v_obj->>'subscription')
        ON CONFLICT (stripe_subscription_id) DO NOTHING;

        RETURN 'subscription linked';
    END IF;

    IF v_obj->>'payment_status' IS DISTINCT FROM 'paid' THEN
        RETURN 'awaiting payment';
    END IF;

    IF v_obj->'metadata'->>'credits' ~ '^[0-9]{1,15}$' THEN
        v_credits := (v_obj->'metadata'->>'credits')::bigint;
    ELSE
        SELECT c.credits INTO v_credits FROM credit_packs c
         WHERE c.id = v_obj->'metadata'->>'pack';
    END IF;

    IF v_credits IS NULL OR v_credits <= 0 THEN
        RETURN 'ignored: no pack or credits in the session';
    END IF;

    SELECT c.applied INTO v_applied
      FROM monetize_credit(v_user, v_credits, 'purchase',
                           'stripe:checkout:' || (v_obj->>'id'), NULL,
                           jsonb_build_object(
                               'session', v_obj->>'id',
                               'payment_intent', v_obj->>'payment_intent',
                               'pack', v_obj->'metadata'->>'pack',
                               'event', p_event->>'id')) AS c;

    RETURN CASE WHEN v_applied THEN 'granted ' || v_credits
                ELSE 'already granted' END;
END
$$;


CREATE FUNCTION monetize_stripe_status(p_status text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_status IN ('incomplete', 'incomplete_expired',
                                  'trialing', 'active', 'past_due',
                                  'canceled', 'unpaid', 'paused')
                THEN p_status ELSE 'incomplete' END;
$$;


-- customer.subscription.created / updated / deleted.
CREATE FUNCTION monetize_stripe_subscription(p_event jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_obj      jsonb := p_event->'data'->'object';
    v_created  bigint := (p_event->>'created')::bigint;
    v_item     jsonb := p_event->'data'->'object'->'items'->'data'->0;
    v_sub      subscriptions;
    v_user     uuid;
    v_plan     text;
    v_status   text;
    v_start    timestamptz;
    v_end      timestamptz;
BEGIN
    SELECT * INTO v_sub FROM subscriptions s
     WHERE s.stripe_subscription_id = v_obj->>'id';

    v_user := coalesce(v_sub.user_id, monetize_stripe_user(v_obj));

    IF v_user IS NULL THEN
        RETURN 'ignored: no account for this subscription';
    END IF;

    SELECT p.id INTO v_plan FROM plans p
     WHERE p.stripe_price_id = v_item->'price'->>'id'
     ORDER BY p.id LIMIT 1;

    IF v_plan IS NULL THEN
        SELECT p.id INTO v_plan FROM plans p
         WHERE p.id = coalesce(v_obj->'metadata'->>'plan', v_sub.plan_id);
    END IF;

    IF v_plan IS NULL THEN
        RETURN 'ignored: no plan has this price';
    END IF;

    v_status := CASE WHEN p_event->>'type' = 'customer.subscription.deleted'
                     THEN 'canceled'
                     ELSE monetize_stripe_status(v_obj->>'status') END;

    -- API versions since 2025 say the period on the item
    v_start := coalesce(monetize_stripe_time(v_obj->'current_period_start'),
                        monetize_stripe_time(v_item->'current_period_start'));
    v_end := coalesce(monetize_stripe_time(v_obj->'current_period_end'),
                      monetize_stripe_time(v_item->'current_period_end'));

    PERFORM monetize_lock_account(v_user);
    PERFORM monetize_stripe_link_customer(v_user, v_obj->>'customer');

    INSERT INTO subscriptions (user_id, plan_id, status,
                               stripe_subscription_id, current_period_start,
                               current_period_end, cancel_at_period_end,
                               stripe_event_created)
    VALUES (v_user, v_plan, v_status, v_obj->>'id', v_start, v_end,
            coalesce((v_obj->>'cancel_at_period_end')::boolean, false),
            v_created)
    ON CONFLICT (stripe_subscription_id) DO NOTHING;

    IF FOUND THEN
        RETURN 'subscription ' || v_status || ' on ' || v_plan;
    END IF;

    SELECT * INTO v_sub FROM subscriptions s
     WHERE s.stripe_subscription_id = v_obj->>'id' FOR UPDATE;

    IF v_sub.stripe_event_created > v_created THEN
        RETURN 'stale: a newer event was applied';
    END IF;

    UPDATE subscriptions s
       SET plan_id = v_plan, status = v_status,
           current_period_start = coalesce(v_start, s.current_period_start),
           current_period_end = coalesce(v_end, s.current_period_end),
           cancel_at_period_end =
               coalesce((v_obj->>'cancel_at_period_end')::boolean,
                        s.cancel_at_period_end),
           stripe_event_created = v_created, updated_at = now()
     WHERE s.id = v_sub.id;

    RETURN 'subscription ' || v_status || ' on ' || v_plan;
END
$$;


-- invoice.paid (a period paid: the new one starts, and its quota) and
-- invoice.payment_failed (past_due, see monetize_past_due).
CREATE FUNCTION monetize_stripe_invoice(p_event jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_obj      jsonb := p_event->'data'->'object';
    v_created  bigint := (p_event->>'created')::bigint;
    v_line     jsonb := p_event->'data'->'object'->'lines'->'data'->0;
    v_id       text;
    v_sub      subscriptions;
    v_paid     boolean := p_event->>'type' = 'invoice.paid';
BEGIN
    v_id := coalesce(v_obj->>'subscription',
                     v_obj->'parent'->'subscription_details'
                          ->>'subscription');

    SELECT * INTO v_sub FROM subscriptions s
     WHERE s.stripe_subscription_id = v_id;

    IF NOT FOUND THEN
        RETURN 'ignored: no such subscription';
    END IF;

    PERFORM monetize_lock_account(v_sub.user_id);

    SELECT * INTO v_sub FROM subscriptions s
     WHERE s.id = v_sub.id FOR UPDATE;

    IF v_sub.stripe_event_created > v_created THEN
        RETURN 'stale: a newer event was applied';
    END IF;

    UPDATE subscriptions s
       SET status = CASE WHEN v_paid THEN 'active' ELSE 'past_due' END,
           current_period_start = CASE WHEN v_paid THEN coalesce(
               monetize_stripe_time(v_line->'period'->'start'),
               s.current_period_start) ELSE s.current_period_start END,
           current_period_end = CASE WHEN v_paid THEN coalesce(
               monetize_stripe_time(v_line->'period'->'end'),
               s.current_period_end) ELSE s.current_period_end END,
           stripe_event_created = v_created, updated_at = now()
     WHERE s.id = v_sub.id;

    RETURN CASE WHEN v_paid THEN 'period paid' ELSE 'past_due' END;
END
$$;


-- charge.refunded: amount_refunded is the charge's total so far, so each
-- event takes back what the total wants beyond what earlier ones wanted.
CREATE FUNCTION monetize_stripe_refund(p_event jsonb)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_obj       jsonb := p_event->'data'->'object';
    v_grant     credit_ledger;
    v_row       stripe_charge_refunds;
    v_amount    bigint;
    v_refunded  bigint;
    v_wanted    bigint;
    v_more      bigint;
    v_take      bigint;
    v_balance   bigint;
BEGIN
    SELECT * INTO v_grant FROM credit_ledger l
     WHERE l.kind = 'purchase'
       AND l.metadata->>'payment_intent' = v_obj->>'payment_intent'
     ORDER BY l.id LIMIT 1;

    IF NOT FOUND THEN
        RETURN 'ignored: no purchase was paid by this charge';
    END IF;

    IF NOT (v_obj->>'amount' ~ '^[0-9]{1,15}$'
            AND v_obj->>'amount_refunded' ~ '^[0-9]{1,15}$')
    THEN
        RETURN 'ignored: no amounts in the charge';
    END IF;

    v_amount := (v_obj->>'amount')::bigint;
    v_refunded := (v_obj->>'amount_refunded')::bigint;

    v_wanted := CASE WHEN v_amount <= 0 OR v_refunded >= v_amount
                     THEN v_grant.delta
                     ELSE v_grant.delta * v_refunded / v_amount END;

    v_balance := monetize_lock_account(v_grant.user_id);

    INSERT INTO stripe_charge_refunds (charge_id, user_id, purchase)
    VALUES (v_obj->>'id', v_grant.user_id, v_grant.reference)
    ON CONFLICT (charge_id) DO NOTHING;

    SELECT * INTO v_row FROM stripe_charge_refunds c
     WHERE c.charge_id = v_obj->>'id' FOR UPDATE;

    v_more := v_wanted - v_row.credits_wanted;

    IF v_more <= 0 THEN
        RETURN 'nothing more to take back';
    END IF;

    v_take := least(v_more, v_balance);

    IF v_take > 0 THEN
        PERFORM monetize_credit(v_grant.user_id, -v_take, 'purchase_refund',
                                'stripe:refund:' || (v_obj->>'id') || ':'
                                    || v_refunded,
                                NULL,
                                jsonb_build_object(
                                    'charge', v_obj->>'id',
                                    'payment_intent',
                                        v_obj->>'payment_intent',
                                    'purchase', v_grant.reference,
                                    'amount_refunded', v_refunded,
                                    'wanted', v_more,
                                    'shortfall', v_more - v_take,
                                    'event', p_event->>'id'));
    END IF;

    IF v_take < v_more THEN
        PERFORM monetize_audit(NULL, 'stripe.refund_shortfall',
                               'charge:' || (v_obj->>'id'), v_grant.user_id,
                               jsonb_build_object(
                                   'purchase', v_grant.reference,
                                   'wanted', v_more, 'taken', v_take,
                                   'shortfall', v_more - v_take,
                                   'event', p_event->>'id'),
                               NULL);
    END IF;

    UPDATE stripe_charge_refunds c
       SET amount_refunded = greatest(c.amount_refunded, v_refunded),
           credits_wanted = v_wanted,
           credits_taken = c.credits_taken + v_take, updated_at = now()
     WHERE c.charge_id = v_row.charge_id;

    RETURN 'took back ' || v_take || ' of ' || v_more;
END
$$;


-- The one entry point: records the event and applies it, once. Returns
-- what it did, and whether it had been done before (a redelivery).
CREATE FUNCTION monetize_stripe_event(p_event jsonb)
RETURNS TABLE (outcome text, replay boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_id       text := p_event->>'id';
    v_type     text := p_event->>'type';
    v_outcome  text;
BEGIN
    INSERT INTO webhook_events (id, provider, type, payload, created)
    VALUES (v_id, 'stripe', v_type, p_event, (p_event->>'created')::bigint)
    ON CONFLICT (id) DO NOTHING;

    IF NOT FOUND THEN
        RETURN QUERY SELECT w.outcome, true FROM webhook_events w
                      WHERE w.id = v_id;
        RETURN;
    END IF;

    IF current_setting('monetize.test_hold', true) = 'on' THEN
        PERFORM pg_advisory_xact_lock(60130);
    END IF;

    v_outcome := CASE
        WHEN v_type IN ('checkout.session.completed',
                        'checkout.session.async_payment_succeeded',
                        'checkout.session.async_payment_failed')
            THEN monetize_stripe_checkout(p_event)
        WHEN v_type IN ('customer.subscription.created',
                        'customer.subscription.updated',
                        'customer.subscription.deleted')
            THEN monetize_stripe_subscription(p_event)
        WHEN v_type IN ('invoice.paid', 'invoice.payment_failed')
            THEN monetize_stripe_invoice(p_event)
        WHEN v_type = 'charge.refunded'
            THEN monetize_stripe_refund(p_event)
        ELSE 'ignored: a type this module does not apply' END;

    UPDATE webhook_events w SET outcome = v_outcome, processed_at = now()
     WHERE w.id = v_id;

    RETURN QUERY SELECT v_outcome, false;
END
$$;


-- The gate reads whether the account's subscription is past_due
-- (monetize_past_due); the columns before are 009's.
DROP FUNCTION monetize_gate_key(text);

CREATE FUNCTION monetize_gate_key(p_key_hash text)
RETURNS TABLE (key_id uuid, key_user uuid, key_revoked boolean,
               key_expires_in bigint, user_suspended boolean,
               user_balance bigint, plan text, plan_rps integer,
               plan_burst integer, user_verified boolean,
               past_due boolean)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT k.id, k.user_id, k.revoked_at IS NOT NULL,
           floor(extract(epoch FROM k.expires_at - now()) * 1000)::bigint,
           u.suspended_at IS NOT NULL, coalesce(b.balance, 0),
           p.id, p.rate_limit_rps, p.rate_limit_burst, u.email_verified,
           EXISTS (SELECT 1 FROM subscriptions s
                    WHERE s.user_id = k.user_id AND s.status = 'past_due')
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


DROP FUNCTION monetize_gate_session(uuid);

CREATE FUNCTION monetize_gate_session(p_user uuid)
RETURNS TABLE (key_id uuid, key_user uuid, key_revoked boolean,
               key_expires_in bigint, user_suspended boolean,
               user_balance bigint, plan text, plan_rps integer,
               plan_burst integer, user_verified boolean,
               past_due boolean)
LANGUAGE sql AS $$
    SELECT '00000000-0000-0000-0000-000000000000'::uuid, u.id, false,
           NULL::bigint, u.suspended_at IS NOT NULL, coalesce(b.balance, 0),
           p.id, p.rate_limit_rps, p.rate_limit_burst, u.email_verified,
           EXISTS (SELECT 1 FROM subscriptions s
                    WHERE s.user_id = u.id AND s.status = 'past_due')
      FROM users u
      LEFT JOIN balances b ON b.user_id = u.id
      LEFT JOIN plans p ON p.id = (SELECT o.plan_id
                                     FROM monetize_plan_of(u.id) AS o)
     WHERE u.id = $1;
$$;
