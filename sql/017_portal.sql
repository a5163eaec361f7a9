-- nginx-monetize: what the portal needs of the API. A forgotten password
-- (a reset mail through the outbox of 008, with a one-use token in
-- email_tokens of 001), and the operators' reports: webhook events,
-- revenue, top accounts. The reports read only 001's columns of
-- webhook_events, so that the state columns Stripe's issue adds to it do
-- not change them.


-- A reset mail for the account of p_email, unless one was queued for the
-- address within the last minute. The token is valid one hour. Says
-- nothing of whether the account exists: the API answers 202 either way.
CREATE FUNCTION monetize_forgot_password(p_email text, p_token_hash text,
                                         p_subject text, p_text text,
                                         p_html text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_user  uuid;
BEGIN
    SELECT id INTO v_user FROM users WHERE email = p_email FOR UPDATE;

    IF v_user IS NULL THEN
        RETURN false;
    END IF;

    -- the lock on the user row orders two requests for one address
    IF EXISTS (SELECT 1 FROM mail_outbox
                WHERE to_addr = p_email AND kind = 'reset'
                  AND created_at > now() - interval '1 minute')
    THEN
        RETURN false;
    END IF;

    INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)
    VALUES (p_token_hash, v_user, 'reset', now() + interval '1 hour');

    INSERT INTO mail_outbox (user_id, kind, to_addr, subject, body_text,
                             body_html)
    VALUES (v_user, 'reset', p_email, p_subject, p_text, p_html);

    RETURN true;
END
$$;


-- Whether a reset token may be spent now: checked before the new password
-- is hashed, so that a wrong token costs no bcrypt.
CREATE FUNCTION monetize_reset_token_valid(p_token_hash text)
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM email_tokens t
                    WHERE t.token_hash = p_token_hash
                      AND t.purpose = 'reset' AND t.used_at IS NULL
                      AND t.expires_at > now())
$$;


-- Spends the token and sets the password (hashed by the caller); every
-- reset token of the account is spent with it and every refresh family
-- revoked: whoever held a session or a mail before holds nothing now. The
-- token came by mail to the account's address: the address is verified.
-- False (nothing written) when the token is unknown, used or expired,
-- which includes one spent by a reset that ran at the same time.
CREATE FUNCTION monetize_reset_password(p_token_hash text,
                                        p_password_hash text,
                                        p_address text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_user  uuid;
BEGIN
    UPDATE email_tokens t
       SET used_at = now()
     WHERE t.token_hash = p_token_hash
       AND t.purpose = 'reset'
       AND t.used_at IS NULL
       AND t.expires_at > now()
    RETURNING t.user_id INTO v_user;

    IF v_user IS NULL THEN
        RETURN false;
    END IF;

    UPDATE email_tokens t SET used_at = now()
     WHERE t.user_id = v_user AND t.purpose = 'reset' AND t.used_at IS NULL;

    UPDATE users u SET password_hash = p_password_hash,
                       email_verified = true, updated_at = now()
     WHERE u.id = v_user;

    UPDATE refresh_tokens t SET revoked_at = now()
     WHERE t.user_id = v_user AND t.revoked_at IS NULL;

    PERFORM monetize_audit(v_user, 'password.reset', 'user:' || v_user,
                           v_user, NULL, p_address);

    RETURN true;
END
$$;


-- What the reports read, by time: the ledger has a row per paid call, and
-- only its purchases are asked for.
CREATE INDEX credit_ledger_purchases ON credit_ledger (created_at)
    WHERE kind = 'purchase';
CREATE INDEX usage_day ON usage (day);
CREATE INDEX webhook_events_received ON webhook_events (received_at, id);


-- GET /admin/webhook_events: newest first (received_at, then id), of the
-- state p_status ('applied': processed_at set; 'pending': not; NULL:
-- all), older than the event p_before (NULL: from the newest). next is
-- the last id of the page when more follow; NULL when p_before names no
-- event. The payload stays out: it is Stripe's, and large.
CREATE FUNCTION monetize_admin_webhook_events_json(p_status text,
                                                   p_limit integer,
                                                   p_before text)
RETURNS json
LANGUAGE sql STABLE AS $$
    WITH before AS (
        SELECT b.received_at, b.id FROM webhook_events b WHERE b.id = p_before
    ), page AS (
        SELECT e.id, e.provider, e.type, e.received_at, e.processed_at
          FROM webhook_events e
         WHERE (p_status IS NULL
                OR (p_status = 'applied') = (e.processed_at IS NOT NULL))
           AND (p_before IS NULL
                OR (e.received_at, e.id) < (SELECT b.received_at, b.id
                                              FROM before b))
         ORDER BY e.received_at DESC, e.id DESC
         LIMIT p_limit + 1
    ), numbered AS (
        SELECT pg.*, row_number() OVER (ORDER BY pg.received_at DESC,
                                                 pg.id DESC) AS n
          FROM page pg
    )
    SELECT (SELECT json_build_object(
        'events', coalesce((SELECT json_agg(json_build_object(
                      'id', x.id, 'provider', x.provider, 'type', x.type,
                      'received_at', monetize_iso8601(x.received_at),
                      'processed_at', monetize_iso8601(x.processed_at),
                      'status', CASE WHEN x.processed_at IS NOT NULL
                                     THEN 'applied' ELSE 'pending' END)
                      ORDER BY x.n)
                    FROM numbered x WHERE x.n <= p_limit), '[]'),
        'next', (SELECT x.id FROM numbered x WHERE x.n = p_limit
                    AND EXISTS (SELECT 1 FROM numbered y
                                 WHERE y.n = p_limit + 1)))
     WHERE p_before IS NULL OR EXISTS (SELECT 1 FROM before))
$$;


-- GET /admin/revenue. Credits sold: the ledger's 'purchase' rows, this
-- calendar month (UTC) and ever. Subscriptions: those Stripe bills (a
-- plan an operator set has no Stripe id and is no sale), by plan and
-- status. MRR: the active ones' plan prices, a yearly price counted as a
-- twelfth a month, in cents of each currency.
CREATE FUNCTION monetize_admin_revenue_json()
RETURNS json
LANGUAGE sql STABLE AS $$
    WITH month AS (
        SELECT date_trunc('month', now() AT TIME ZONE 'UTC')
                   AT TIME ZONE 'UTC' AS start
    )
    SELECT json_build_object(
        'credits_sold', (
            SELECT json_build_object(
                       'this_month', coalesce(sum(l.delta)
                           FILTER (WHERE l.created_at >= m.start), 0),
                       'all_time', coalesce(sum(l.delta), 0),
                       'month_start', monetize_iso8601(m.start))
              FROM month m
              LEFT JOIN credit_ledger l ON l.kind = 'purchase'
             GROUP BY m.start),
        'subscriptions', coalesce((
            SELECT json_agg(json_build_object(
                       'plan', g.plan_id, 'status', g.status,
                       'count', g.n)
                       ORDER BY g.plan_id, g.status)
              FROM (SELECT s.plan_id, s.status, count(*) AS n
                      FROM subscriptions s
                     WHERE s.stripe_subscription_id IS NOT NULL
                     GROUP BY s.plan_id, s.status) AS g), '[]'),
        'mrr', coalesce((
            SELECT json_agg(json_build_object(
                       'currency', c.currency, 'amount_cents', c.cents)
                       ORDER BY c.currency)
              FROM (SELECT p.currency,
                           round(sum(CASE WHEN p.interval = 'year'
                                          THEN p.price_cents / 12.0
                                          ELSE p.price_cents END))::bigint
                               AS cents
                      FROM subscriptions s
                      JOIN plans p ON p.id = s.plan_id
                     WHERE s.stripe_subscription_id IS NOT NULL
                       AND s.status = 'active'
                     GROUP BY p.currency) AS c), '[]'))
$$;


-- GET /admin/top_accounts: the accounts with the most calls in the last
-- p_days days (today included, UTC days as usage counts them), every key
-- and location summed.
CREATE FUNCTION monetize_admin_top_accounts_json(p_days integer,
                                                 p_limit integer)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'days', p_days,
        'accounts', coalesce((
            SELECT json_agg(json_build_object(
                       'user_id', t.user_id, 'email', u.email,
                       'calls', t.calls, 'credits', t.credits)
                       ORDER BY t.calls DESC, t.user_id)
              FROM (SELECT x.user_id, sum(x.calls)::bigint AS calls,
                           sum(x.credits)::bigint AS credits
                      FROM usage x
                     WHERE x.day > (now() AT TIME ZONE 'UTC')::date - p_days
                     GROUP BY x.user_id
                     ORDER BY sum(x.calls) DESC, x.user_id
                     LIMIT p_limit) AS t
              JOIN users u ON u.id = t.user_id), '[]'))
$$;
