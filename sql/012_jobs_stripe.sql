-- 012: the jobs outbox (outbound HTTP work that must happen once) and each
-- user's Stripe customer.
--
-- A job is a row here, committed in the transaction that causes it (a
-- trigger on users queues the user's Stripe customer with the account).
-- Each nginx worker's runner claims due rows (SKIP LOCKED, leased), runs
-- the kind's handler, and marks the row done, due again after a backoff,
-- or failed for good. dedup_key makes one job per intent: a second enqueue
-- of the same intent is a no-op.

CREATE TABLE jobs (
    id                  bigserial PRIMARY KEY,
    kind                text NOT NULL,
    user_id             uuid REFERENCES users ON DELETE CASCADE,
    dedup_key           text UNIQUE,
    payload             jsonb NOT NULL DEFAULT '{}',
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text,
    done_at             timestamptz,
    failed_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_due ON jobs (next_attempt_at)
    WHERE done_at IS NULL AND failed_at IS NULL;


-- The job's id, or NULL when a job with that dedup_key exists already.
CREATE FUNCTION monetize_job_enqueue(p_kind text, p_user uuid,
                                     p_payload jsonb, p_dedup_key text)
RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO jobs (kind, user_id, payload, dedup_key)
    VALUES (p_kind, p_user, coalesce(p_payload, '{}'), p_dedup_key)
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id
$$;


-- The runner's claim: due rows of the kinds this worker runs, each taken by
-- one worker (SKIP LOCKED), leased for p_lease_ms (longer than a run may
-- take): a worker that dies while running leaves its rows due again when
-- the lease ends.
CREATE FUNCTION monetize_job_claim(p_kinds text[], p_lease_ms bigint,
                                   p_limit integer)
RETURNS TABLE (id bigint, kind text, user_id uuid, payload jsonb,
               attempts integer)
LANGUAGE sql AS $$
    UPDATE jobs j
       SET attempts = j.attempts + 1,
           next_attempt_at = now() + p_lease_ms * interval '1 millisecond'
     WHERE j.id IN (SELECT d.id FROM jobs d
                     WHERE d.done_at IS NULL AND d.failed_at IS NULL
                       AND d.next_attempt_at <= now()
                       AND d.kind = ANY (p_kinds)
                     ORDER BY d.next_attempt_at
                     LIMIT p_limit
                       FOR UPDATE SKIP LOCKED)
    RETURNING j.id, j.kind, j.user_id, j.payload, j.attempts
$$;


CREATE FUNCTION monetize_job_done(p_id bigint)
RETURNS boolean
LANGUAGE sql AS $$
    UPDATE jobs
       SET done_at = now(), last_error = NULL
     WHERE id = p_id AND done_at IS NULL AND failed_at IS NULL
    RETURNING true
$$;


-- Not done: due again after 2^(attempts-1) seconds, at most 10 minutes,
-- for as long as it takes (a job is work promised; only its handler gives
-- it up, with monetize_job_fail).
CREATE FUNCTION monetize_job_retry(p_id bigint, p_error text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE jobs
       SET last_error = left(p_error, 500),
           next_attempt_at = now()
               + least(power(2, least(attempts, 20) - 1), 600)
                 * interval '1 second'
     WHERE id = p_id AND done_at IS NULL AND failed_at IS NULL
$$;


CREATE FUNCTION monetize_job_fail(p_id bigint, p_error text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE jobs
       SET last_error = left(p_error, 500), failed_at = now()
     WHERE id = p_id AND done_at IS NULL AND failed_at IS NULL
$$;


-- Housekeeping: done jobs after 7 days, failed ones after 30.
CREATE FUNCTION monetize_job_cleanup()
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_jobs  bigint;
BEGIN
    DELETE FROM jobs
     WHERE done_at < now() - interval '7 days'
        OR failed_at < now() - interval '30 days';
    GET DIAGNOSTICS v_jobs = ROW_COUNT;

    RETURN v_jobs;
END
$$;


-- Every account gets its Stripe customer, whichever way it was made
-- (registration, an operator, a migration): queued with the account, so
-- registration never waits for Stripe. The dedup_key is also the
-- Idempotency-Key of the POST that makes the customer.
CREATE FUNCTION monetize_users_stripe_customer_job()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stripe_customer_id IS NULL THEN
        PERFORM monetize_job_enqueue('stripe_customer', NEW.id, '{}',
                                     'customer-' || NEW.id);
    END IF;

    RETURN NULL;
END
$$;

CREATE TRIGGER users_stripe_customer_job
    AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION monetize_users_stripe_customer_job();


-- What the customer is made of, and whether it exists already.
CREATE FUNCTION monetize_stripe_customer_get(p_user uuid)
RETURNS TABLE (stripe_customer_id text, email text, name text)
LANGUAGE sql STABLE AS $$
    SELECT u.stripe_customer_id, u.email, u.name
      FROM users u
     WHERE u.id = p_user
$$;


-- Stores the customer once; answers the one stored (the first, when two
-- paths raced), NULL for an account that is gone.
CREATE FUNCTION monetize_stripe_customer_set(p_user uuid, p_customer text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_customer  text;
BEGIN
    UPDATE users
       SET stripe_customer_id = p_customer, updated_at = now()
     WHERE id = p_user AND stripe_customer_id IS NULL
    RETURNING stripe_customer_id INTO v_customer;

    IF v_customer IS NULL THEN
        SELECT u.stripe_customer_id INTO v_customer
          FROM users u
         WHERE u.id = p_user;
    END IF;

    RETURN v_customer;
END
$$;
