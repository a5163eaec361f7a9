-- 021: AWS STS temporary credentials (POST /aws/credentials).
--
-- Each call is a row, made before STS is asked (so that concurrent calls
-- of one account count each other against its hourly limit), then marked
-- issued (with AWS's access key id, which is no secret, and the
-- expiration) or failed (with STS's error code). The secret access key and
-- the session token are never stored. A call whose client went while STS
-- was asked stays 'pending' and counts: STS may have issued its
-- credentials.

CREATE TABLE aws_credentials (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    api_key_id          uuid NOT NULL,          -- nil: a session token
    role_arn            text NOT NULL,
    session_name        text NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'issued', 'failed')),
    access_key_id       text,
    expires_at          timestamptz,
    error               text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX aws_credentials_user ON aws_credentials (user_id, created_at);


-- Whether the account may have credentials now: its plan is one of
-- p_plans (NULL: any plan but free), and fewer than p_limit calls of the
-- last hour are pending or issued. 'ok' with the new row's id; 'plan' with
-- the account's plan; 'limited' with the seconds until the oldest leaves
-- the hour. Calls of one account are serialized by an advisory lock, so
-- that two at once cannot both take the last place.
CREATE FUNCTION monetize_sts_begin(p_user uuid, p_key uuid, p_plans text[],
                                   p_limit integer, p_role text,
                                   p_session text)
RETURNS TABLE (outcome text, id bigint, plan_id text, retry_after integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_plan    text;
    v_count   integer;
    v_oldest  timestamptz;
    v_id      bigint;
BEGIN
    SELECT p.plan_id INTO v_plan FROM monetize_plan_of(p_user) p;

    IF v_plan IS NULL
       OR (p_plans IS NULL AND v_plan = 'free')
       OR (p_plans IS NOT NULL AND NOT v_plan = ANY (p_plans))
    THEN
        RETURN QUERY SELECT 'plan'::text, NULL::bigint, v_plan, NULL::integer;
        RETURN;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('monetize_sts:' || p_user));

    SELECT count(*), min(c.created_at) INTO v_count, v_oldest
      FROM aws_credentials c
     WHERE c.user_id = p_user
       AND c.status <> 'failed'
       AND c.created_at > now() - interval '1 hour';

    IF v_count >= p_limit THEN
        RETURN QUERY SELECT 'limited'::text, NULL::bigint, v_plan,
            greatest(1, ceil(extract(epoch FROM
                v_oldest + interval '1 hour' - now())))::integer;
        RETURN;
    END IF;

    INSERT INTO aws_credentials (user_id, api_key_id, role_arn, session_name)
    VALUES (p_user, p_key, p_role, p_session)
    RETURNING aws_credentials.id INTO v_id;

    RETURN QUERY SELECT 'ok'::text, v_id, v_plan, NULL::integer;
END;
$$;


-- STS issued them: the row, a call in usage (location 'aws/credentials',
-- no credits) and the audit log, in one transaction. The client gets the
-- credentials only once this has committed.
CREATE FUNCTION monetize_sts_issued(p_id bigint, p_access_key_id text,
                                    p_expires timestamptz, p_address text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_row  aws_credentials%ROWTYPE;
BEGIN
    UPDATE aws_credentials c
       SET status = 'issued', access_key_id = p_access_key_id,
           expires_at = p_expires
     WHERE c.id = p_id AND c.status = 'pending'
    RETURNING * INTO v_row;

    IF NOT FOUND THEN
        RETURN false;
    END IF;

    PERFORM monetize_add_usage(ARRAY[v_row.user_id], ARRAY[v_row.api_key_id],
                               ARRAY['aws/credentials'],
                               ARRAY[(now() AT TIME ZONE 'UTC')::date],
                               ARRAY[1::bigint], ARRAY[0::bigint]);

    PERFORM monetize_audit(v_row.user_id, 'aws.credentials', p_access_key_id,
                           v_row.user_id,
                           jsonb_build_object(
                               'role_arn', v_row.role_arn,
                               'session_name', v_row.session_name,
                               'api_key_id', v_row.api_key_id,
                               'expiration', p_expires),
                           p_address);

    RETURN true;
END;
$$;


CREATE FUNCTION monetize_sts_failed(p_id bigint, p_error text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE aws_credentials c SET status = 'failed', error = p_error
     WHERE c.id = p_id AND c.status = 'pending';
$$;
