-- 014: usage alerts: 80% and 100% of the monthly quota, a low balance.
--
-- Crossings are found by a sweep (monetize_alerts_sweep below) that each
-- nginx worker runs every few seconds, not in the gate's debit: the gate's
-- transaction stays as it was. One sweep runs at a time across workers and
-- nodes (a transaction-level advisory lock; the others skip their turn),
-- and an alert is a row unique per account, kind and period, written in
-- the same transaction as its mail (mail_outbox, sql/008) and its operator
-- webhook (a "notify" job, sql/012): sent once, whoever sweeps.
--
-- The period of a quota alert is the account's billing period (its
-- period_start, monetize_plan_of in sql/004). The period of a low-balance
-- alert is the stretch of time the balance stays below the threshold: it is
-- named by the last ledger entry that left the balance at or above the
-- threshold, so one alert is sent when the balance falls below it, and the
-- next only after it has been at or above it again. An account whose
-- balance never reached the threshold gets none (a free account with no
-- credits is not "running low").


CREATE TABLE alerts (
    id                  bigserial PRIMARY KEY,
    event_id            text NOT NULL UNIQUE
                        DEFAULT 'evt_' || replace(gen_random_uuid()::text,
                                                  '-', ''),
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    kind                text NOT NULL CHECK (kind IN ('quota.80',
                            'quota.100', 'balance.low')),
    period              text NOT NULL,
    notified            boolean NOT NULL,   -- false: recorded, not sent
    data                jsonb NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, kind, period)
);

-- the sweep reads the periods running now, not the whole history
CREATE INDEX quota_usage_period ON quota_usage (period_start);

-- The balances below the threshold the sweep has looked at, as they were
-- (balances.updated_at): it looks at one again only once it changed.
CREATE TABLE alert_balance_checked (
    user_id             uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    balance_at          timestamptz NOT NULL,
    threshold           bigint NOT NULL
);


CREATE FUNCTION monetize_html_escape(p_text text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(p_text, '&', '&amp;'),
                                   '<', '&lt;'), '>', '&gt;'), '"', '&quot;')
$$;


-- One alert: its row, and unless it exists already, its mail (p_mail) and
-- its operator webhook job (p_notify). p_send false records the alert
-- without a word (80% reached in the same sweep as 100%: one mail says
-- both). Returns what was queued: 0 (the alert existed, or silent), or 1
-- for the mail plus 2 for the job.
CREATE FUNCTION monetize_alert(p_user uuid, p_kind text, p_period text,
                               p_data jsonb, p_send boolean, p_mail boolean,
                               p_notify boolean, p_public_url text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_alert    alerts%ROWTYPE;
    v_subject  text;
    v_text     text;
    v_what     text;
    v_until    text;
    v_once     text;
    v_url      text := rtrim(coalesce(p_public_url, ''), '/');
    v_queued   integer := 0;
BEGIN
    INSERT INTO alerts (user_id, kind, period, notified, data)
    VALUES (p_user, p_kind, p_period, p_send, p_data)
    ON CONFLICT (user_id, kind, period) DO NOTHING
    RETURNING * INTO v_alert;

    IF NOT FOUND OR NOT p_send THEN
        RETURN 0;
    END IF;

    v_until := to_char((p_data->>'period_end')::timestamptz
                           AT TIME ZONE 'UTC', 'FMMonth FMDD, YYYY');

    IF p_kind = 'quota.80' THEN
        v_subject := 'You have used 80% of your monthly calls';
        v_what := format('your account has used %s of the %s calls its %s '
                         'plan includes this period, which ends on %s. '
                         'Calls beyond them are paid with credits, or '
                         'refused without.',
                         p_data->>'used', p_data->>'quota',
                         p_data->>'plan_name', v_until);

    ELSIF p_kind = 'quota.100' THEN
        v_subject := 'You have used all of your monthly calls';
        v_what := format('your account has used all %s calls its %s plan '
                         'includes this period, which ends on %s. Until '
                         'then, calls are paid with credits (you have %s), '
                         'or refused without.',
                         p_data->>'quota', p_data->>'plan_name', v_until,
                         p_data->>'balance');

    ELSE
        v_subject := 'Your credit balance is low';
        v_what := format('your account has %s credits left, below the %s '
                         'we warn at. Calls that need credits are refused '
                         'when they run out.',
                         p_data->>'balance', p_data->>'threshold');
    END IF;

    IF p_mail THEN
        v_once := CASE WHEN p_kind = 'balance.low'
                       THEN 'We write about this again only after your '
                            || 'balance has been back at '
                            || (p_data->>'threshold') || ' or more.'
                       ELSE 'We write about this once a period.' END;

        v_text := 'Hello,' || E'\n\n' || v_what || E'\n\n'
               || 'Plans and credit packs: ' || v_url || '/v1/plans'
               || E'\n\n' || v_once || E'\n';

        INSERT INTO mail_outbox (user_id, kind, to_addr, subject,
                                 body_text, body_html)
        SELECT p_user, 'alert.' || p_kind, u.email, v_subject, v_text,
               '<!DOCTYPE html>' || E'\n' || '<html><body>' || E'\n'
               || '<p>Hello,</p>' || E'\n'
               || '<p>' || monetize_html_escape(v_what) || '</p>' || E'\n'
               || '<p><a href="' || monetize_html_escape(v_url)
               || '/v1/plans">Plans and credit packs</a></p>' || E'\n'
               || '<p>' || v_once || '</p>' || E'\n'
               || '</body></html>' || E'\n'
          FROM users u WHERE u.id = p_user;

        v_queued := v_queued + 1;
    END IF;

    IF p_notify THEN
        PERFORM monetize_job_enqueue('notify', p_user,
            jsonb_build_object(
                'id', v_alert.event_id,
                'type', p_kind,
                'created', extract(epoch FROM v_alert.created_at)::bigint,
                'data', p_data - 'plan_name' - 'threshold'),
            'notify:' || v_alert.event_id);

        v_queued := v_queued + 2;
    END IF;

    RETURN v_queued;
END
$$;


-- What an alert tells of its account: the event's data.
CREATE FUNCTION monetize_alert_data(p_user uuid, p_threshold bigint)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'user_id', u.id,
               'email', u.email,
               'plan', o.plan_id,
               'plan_name', p.name,
               'used', coalesce(q.calls, 0),
               'quota', o.monthly_quota,
               'balance', coalesce(b.balance, 0),
               'threshold', p_threshold,
               'period_start', to_char(o.period_start AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'period_end', to_char(o.period_end AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
      FROM users u
     CROSS JOIN LATERAL monetize_plan_of(u.id) AS o
      JOIN plans p ON p.id = o.plan_id
      LEFT JOIN quota_usage q ON q.user_id = u.id
                             AND q.period_start = o.period_start
      LEFT JOIN balances b ON b.user_id = u.id
     WHERE u.id = p_user
$$;


-- The sweep. p_low_balance NULL: no low-balance alerts. p_mail, p_notify:
-- what to queue for each alert. Returns the mails and jobs it queued (0, 0
-- when another sweep holds the lock).
CREATE FUNCTION monetize_alerts_sweep(p_low_balance bigint, p_mail boolean,
                                      p_notify boolean, p_public_url text)
RETURNS TABLE (mails integer, jobs integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_row     record;
    v_data    jsonb;
    v_period  text;
    v_full    boolean;
    v_q       integer;
    v_mails   integer := 0;
    v_jobs    integer := 0;
BEGIN
    -- the sweep's own key (t/420 holds it to place calls between two
    -- sweeps): one sweep at a time; the unique rows would keep a second
    -- from sending twice, but not from doing the work twice
    IF NOT pg_try_advisory_xact_lock(1836933452) THEN
        RETURN QUERY SELECT 0, 0;
        RETURN;
    END IF;

    -- quotas: the accounts whose current period has used 80% or more, not
    -- told of 100% yet, nor of 80% unless they have reached the quota that
    -- 80% was told of; only those are looked up (OFFSET 0 keeps the
    -- planner from looking up the plans of all)
    FOR v_row IN
        SELECT q.user_id, q.calls, o.monthly_quota, o.period_start
          FROM (SELECT q.user_id, q.calls, q.period_start
                  FROM quota_usage q
                  LEFT JOIN alerts a80
                         ON a80.user_id = q.user_id
                        AND a80.kind = 'quota.80'
                        AND a80.period = to_char(q.period_start
                                                     AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                 WHERE q.period_start > now() - interval '400 days'
                   AND q.period_start <= now()
                   AND q.calls * 5 >= (SELECT min(p.monthly_quota) * 4
                                         FROM plans p)
                   AND (a80.id IS NULL
                        OR q.calls >= (a80.data->>'quota')::bigint)
                   AND NOT EXISTS (
                           SELECT 1 FROM alerts a
                            WHERE a.user_id = q.user_id
                              AND a.kind = 'quota.100'
                              AND a.period = to_char(q.period_start
                                                         AT TIME ZONE 'UTC',
                                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                OFFSET 0) AS q
         CROSS JOIN LATERAL monetize_plan_of(q.user_id) AS o
         WHERE o.period_start = q.period_start
           AND o.monthly_quota IS NOT NULL
           AND q.calls * 5 >= o.monthly_quota * 4
    LOOP
        v_period := to_char(v_row.period_start AT TIME ZONE 'UTC',
                            'YYYY-MM-DD"T"HH24:MI:SS"Z"');
        v_full := v_row.calls >= v_row.monthly_quota;
        v_data := monetize_alert_data(v_row.user_id, p_low_balance);

        -- 80% and 100% in one sweep: 80% is recorded, 100% is said
        v_q := monetize_alert(v_row.user_id, 'quota.80', v_period, v_data,
                              NOT v_full, p_mail, p_notify, p_public_url);
        v_mails := v_mails + (v_q & 1);
        v_jobs := v_jobs + (v_q >> 1);

        IF v_full THEN
            v_q := monetize_alert(v_row.user_id, 'quota.100', v_period,
                                  v_data, true, p_mail, p_notify,
                                  p_public_url);
            v_mails := v_mails + (v_q & 1);
            v_jobs := v_jobs + (v_q >> 1);
        END IF;
    END LOOP;

    IF p_low_balance IS NULL THEN
        RETURN QUERY SELECT v_mails, v_jobs;
        RETURN;
    END IF;

    -- balances below the threshold that changed since the sweep last
    -- looked at them; the period is the last entry that left the balance
    -- at or above the threshold (none: it never had it, nothing to say)
    FOR v_row IN
        SELECT b.user_id, b.updated_at, k.id AS entry
          FROM balances b
          LEFT JOIN LATERAL (
               SELECT l.id FROM credit_ledger l
                WHERE l.user_id = b.user_id
                  AND l.balance_after >= p_low_balance
                ORDER BY l.id DESC LIMIT 1) AS k ON true
         WHERE b.balance < p_low_balance
           AND NOT EXISTS (
                   SELECT 1 FROM alert_balance_checked c
                    WHERE c.user_id = b.user_id
                      AND c.balance_at = b.updated_at
                      AND c.threshold = p_low_balance)
    LOOP
        IF v_row.entry IS NOT NULL THEN
            v_q := monetize_alert(v_row.user_id, 'balance.low',
                                  v_row.entry::text,
                                  monetize_alert_data(v_row.user_id,
                                                      p_low_balance),
                                  true, p_mail, p_notify, p_public_url);

            v_mails := v_mails + (v_q & 1);
            v_jobs := v_jobs + (v_q >> 1);
        END IF;

        INSERT INTO alert_balance_checked AS c (user_id, balance_at,
                                               threshold)
        VALUES (v_row.user_id, v_row.updated_at, p_low_balance)
        ON CONFLICT (user_id) DO UPDATE
           SET balance_at = EXCLUDED.balance_at,
               threshold = EXCLUDED.threshold;
    END LOOP;

    RETURN QUERY SELECT v_mails, v_jobs;
END
$$;
