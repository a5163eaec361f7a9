-- nginx-monetize: the account's own view (/me), the operators' endpoints
-- (/admin/...) and the audit log they and every key change write.


-- The ledger's kinds, all of them: an operator's grant (a positive amount)
-- and adjustment (a negative one) join those of 001 and 005.
ALTER TABLE credit_ledger DROP CONSTRAINT credit_ledger_kind_check;

ALTER TABLE credit_ledger ADD CONSTRAINT credit_ledger_kind_check
    CHECK (kind IN ('signup', 'purchase', 'debit', 'refund', 'use_credit',
                    'admin', 'subscription', 'write_off', 'grant',
                    'adjustment'));


-- Who did what, to whom, from which address. actor_user_id is the caller
-- (NULL: the system); target names the object ('user:<id>', 'key:<id>');
-- target_user_id is the account it belongs to, so that an account's
-- history is one index scan whoever acted on it.
ALTER TABLE audit_log ADD COLUMN target_user_id uuid;
ALTER TABLE audit_log ADD COLUMN address text;

CREATE INDEX audit_log_actor ON audit_log (actor_user_id, id);
CREATE INDEX audit_log_target_user ON audit_log (target_user_id, id);


CREATE FUNCTION monetize_audit(p_actor uuid, p_action text, p_target text,
                               p_target_user uuid, p_details jsonb,
                               p_address text)
RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO audit_log (actor_user_id, action, target, target_user_id,
                           details, address)
    VALUES (p_actor, p_action, p_target, p_target_user, p_details, p_address)
    RETURNING id
$$;


-- GET /me: the account, its plan now, its Stripe subscription (none until
-- Stripe: a plan an operator set is a subscription row without a Stripe
-- id, and shows as the plan only), its balance, what it used this period
-- and its keys, as one JSON document. NULL when the account is gone.
CREATE FUNCTION monetize_me_json(p_user uuid)
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


-- PATCH /me: the new name (NULL clears it), then the account as GET /me
-- shows it, in one transaction.
CREATE FUNCTION monetize_update_me(p_user uuid, p_name text)
RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users u SET name = p_name, updated_at = now()
     WHERE u.id = p_user;

    RETURN monetize_me_json(p_user);
END
$$;


-- POST /me/password, after the C side checked the current password against
-- p_old_hash and made p_new_hash: the hash changes only if it is still the
-- one checked (false: it changed meanwhile, nothing written), and every
-- refresh family of the account is revoked with it.
CREATE FUNCTION monetize_change_password(p_user uuid, p_old_hash text,
                                         p_new_hash text, p_address text)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users u SET password_hash = p_new_hash, updated_at = now()
     WHERE u.id = p_user AND u.password_hash = p_old_hash;

    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE refresh_tokens t SET revoked_at = now()
     WHERE t.user_id = p_user AND t.revoked_at IS NULL;

    PERFORM monetize_audit(p_user, 'password.change', 'user:' || p_user,
                           p_user, NULL, p_address);

    RETURN true;
END
$$;


-- A user as the admin endpoints show it.
CREATE FUNCTION monetize_admin_user_json(p_user uuid)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', u.id, 'email', u.email, 'name', u.name,
        'email_verified', u.email_verified, 'is_admin', u.is_admin,
        'suspended', u.suspended_at IS NOT NULL,
        'suspended_at', monetize_iso8601(u.suspended_at),
        'plan', (SELECT o.plan_id FROM monetize_plan_of(u.id) AS o),
        'balance', coalesce(b.balance, 0),
        'created_at', monetize_iso8601(u.created_at))
      FROM users u
      LEFT JOIN balances b ON b.user_id = u.id
     WHERE u.id = p_user
$$;


-- POST /admin/credits: a grant (p_amount > 0) or an adjustment (< 0)
-- through monetize_credit(), never below zero, and its audit row, in one
-- transaction. outcome: 'applied', 'not_found' (no such account) or
-- 'insufficient' (the balance cannot give p_amount back; nothing written).
CREATE FUNCTION monetize_admin_credit(p_actor uuid, p_user uuid,
                                      p_amount bigint, p_reason text,
                                      p_address text)
RETURNS TABLE (outcome text, entry json)
LANGUAGE plpgsql AS $$
DECLARE
    v_kind  text;
    v_res   record;
    v_row   credit_ledger%ROWTYPE;
BEGIN
    PERFORM 1 FROM users u WHERE u.id = p_user;

    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::json;
        RETURN;
    END IF;

    v_kind := CASE WHEN p_amount > 0 THEN 'grant' ELSE 'adjustment' END;

    SELECT * INTO v_res
      FROM monetize_credit(p_user, p_amount, v_kind,
                           'admin:' || gen_random_uuid(), NULL,
                           jsonb_build_object('reason', p_reason,
                                              'by', p_actor));

    IF NOT v_res.applied THEN
        RETURN QUERY SELECT 'insufficient'::text,
                            json_build_object('balance', v_res.balance);
        RETURN;
    END IF;

    SELECT * INTO v_row FROM credit_ledger l WHERE l.id = v_res.entry_id;

    PERFORM monetize_audit(p_actor, 'credits.' || v_kind, 'user:' || p_user,
                           p_user,
                           jsonb_build_object('amount', p_amount,
                                              'reason', p_reason,
                                              'entry_id', v_row.id,
                                              'balance_after',
                                              v_row.balance_after),
                           p_address);

    RETURN QUERY SELECT 'applied'::text, json_build_object(
        'id', v_row.id, 'user_id', v_row.user_id, 'amount', v_row.delta,
        'kind', v_row.kind, 'reason', p_reason,
        'balance_after', v_row.balance_after,
        'created_at', monetize_iso8601(v_row.created_at));
END
$$;


-- PATCH /admin/users/{id}: each of p_suspended, p_is_admin, p_plan that is
-- not NULL. A plan is set as a subscription row without a Stripe id
-- (status 'active', no period: the calendar month), replacing the one an
-- operator set before; its trigger tells the gates. A live Stripe
-- subscription still wins over it (monetize_plan_of prefers a period end),
-- and 'free' just ends the operator's plan. outcome: 'updated',
-- 'not_found', 'unknown_plan' (nothing written).
CREATE FUNCTION monetize_admin_update_user(p_actor uuid, p_user uuid,
                                           p_suspended boolean,
                                           p_is_admin boolean, p_plan text,
                                           p_address text)
RETURNS TABLE (outcome text, account json)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM users u WHERE u.id = p_user FOR NO KEY UPDATE;

    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::json;
        RETURN;
    END IF;

    IF p_plan IS NOT NULL AND NOT EXISTS (SELECT 1 FROM plans p
                                           WHERE p.id = p_plan)
    THEN
        RETURN QUERY SELECT 'unknown_plan'::text, NULL::json;
        RETURN;
    END IF;

    UPDATE users u
       SET suspended_at = CASE WHEN p_suspended IS NULL THEN u.suspended_at
                               WHEN p_suspended
                               THEN coalesce(u.suspended_at, now())
                               END,
           is_admin = coalesce(p_is_admin, u.is_admin),
           updated_at = now()
     WHERE u.id = p_user;

    IF p_plan IS NOT NULL THEN
        UPDATE subscriptions s SET status = 'canceled', updated_at = now()
         WHERE s.user_id = p_user AND s.stripe_subscription_id IS NULL
           AND s.status IN ('active', 'trialing', 'past_due');

        IF p_plan <> 'free' THEN
            INSERT INTO subscriptions (user_id, plan_id, status)
            VALUES (p_user, p_plan, 'active');
        END IF;
    END IF;

    PERFORM monetize_audit(p_actor, 'user.update', 'user:' || p_user, p_user,
                           jsonb_strip_nulls(jsonb_build_object(
                               'suspended', p_suspended,
                               'is_admin', p_is_admin, 'plan', p_plan)),
                           p_address);

    RETURN QUERY SELECT 'updated'::text, monetize_admin_user_json(p_user);
END
$$;


-- GET /admin/users: a page of accounts, oldest first, whose email contains
-- p_email (NULL: all), after the account p_after (keyset: created_at, id).
-- next is the last id of the page when more follow.
CREATE FUNCTION monetize_admin_users_json(p_email text, p_limit integer,
                                          p_after uuid)
RETURNS json
LANGUAGE sql STABLE AS $$
    WITH after AS (
        SELECT a.created_at, a.id FROM users a WHERE a.id = p_after
    ), page AS (
        SELECT u.id, u.created_at
          FROM users u
         WHERE (p_email IS NULL
                OR u.email LIKE '%' || replace(replace(replace(lower(p_email),
                       '\', '\\'), '%', '\%'), '_', '\_') || '%')
           AND (p_after IS NULL
                OR (u.created_at, u.id) > (SELECT a.created_at, a.id
                                             FROM after a))
         ORDER BY u.created_at, u.id
         LIMIT p_limit + 1
    ), numbered AS (
        SELECT pg.id, row_number() OVER (ORDER BY pg.created_at, pg.id) AS n
          FROM page pg
    )
    SELECT json_build_object(
        'users', coalesce((SELECT json_agg(monetize_admin_user_json(x.id)
                                           ORDER BY x.n)
                             FROM numbered x WHERE x.n <= p_limit), '[]'),
        'next', (SELECT x.id FROM numbered x WHERE x.n = p_limit
                    AND EXISTS (SELECT 1 FROM numbered y
                                 WHERE y.n = p_limit + 1)))
$$;


-- GET /admin/audit: a page of the audit log, newest first, of the account
-- p_user (as actor or as target; NULL: all), before the row p_after.
CREATE FUNCTION monetize_admin_audit_json(p_user uuid, p_limit integer,
                                          p_after bigint)
RETURNS json
LANGUAGE sql STABLE AS $$
    WITH page AS (
        SELECT a.*
          FROM audit_log a
         WHERE (p_user IS NULL OR a.actor_user_id = p_user
                OR a.target_user_id = p_user)
           AND (p_after IS NULL OR a.id < p_after)
         ORDER BY a.id DESC
         LIMIT p_limit + 1
    ), numbered AS (
        SELECT pg.*, row_number() OVER (ORDER BY pg.id DESC) AS n FROM page pg
    )
    SELECT json_build_object(
        'entries', coalesce((SELECT json_agg(json_build_object(
                       'id', x.id, 'actor', x.actor_user_id,
                       'action', x.action, 'target', x.target,
                       'target_user_id', x.target_user_id,
                       'details', x.details, 'address', x.address,
                       'created_at', monetize_iso8601(x.created_at))
                       ORDER BY x.n)
                     FROM numbered x WHERE x.n <= p_limit), '[]'),
        'next', (SELECT x.id FROM numbered x WHERE x.n = p_limit
                    AND EXISTS (SELECT 1 FROM numbered y
                                 WHERE y.n = p_limit + 1)))
$$;
