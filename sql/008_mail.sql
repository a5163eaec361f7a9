-- 008: mail through an outbox, and email verification.
--
-- A mail is a row here, committed in the transaction that has it to say
-- (registration commits its verification mail with the account). Each
-- nginx worker's sender claims due rows, sends them, and marks them sent
-- or due again later. The text of an unsent verification mail holds its
-- token: sending blanks the bodies, so a sent row keeps only who, what and
-- when.

CREATE TABLE mail_outbox (
    id                  bigserial PRIMARY KEY,
    user_id             uuid REFERENCES users ON DELETE CASCADE,
    kind                text NOT NULL,
    to_addr             text NOT NULL,
    subject             text NOT NULL,
    body_text           text,
    body_html           text,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_error          text,
    sent_at             timestamptz,
    failed_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at)
    WHERE sent_at IS NULL AND failed_at IS NULL;

CREATE INDEX mail_outbox_to ON mail_outbox (to_addr, created_at);


-- Registration as before (001), and the verification mail with it: the
-- token's hash in email_tokens (valid 24 hours), the mail in the outbox.
-- The C code makes the token and the mail's text; the token itself never
-- reaches a table but inside that text.
CREATE FUNCTION monetize_register(p_email text, p_password_hash text,
                                  p_name text, p_key_hash text,
                                  p_key_prefix text, p_signup_credits bigint,
                                  p_token_hash text, p_subject text,
                                  p_text text, p_html text)
RETURNS TABLE (user_id uuid, api_key_id uuid, balance bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_res  record;
BEGIN
    SELECT * INTO v_res
      FROM monetize_register(p_email, p_password_hash, p_name, p_key_hash,
                             p_key_prefix, p_signup_credits);

    INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)
    VALUES (p_token_hash, v_res.user_id, 'verify',
            now() + interval '24 hours');

    INSERT INTO mail_outbox (user_id, kind, to_addr, subject, body_text,
                             body_html)
    VALUES (v_res.user_id, 'verify', p_email, p_subject, p_text, p_html);

    RETURN QUERY SELECT v_res.user_id, v_res.api_key_id, v_res.balance;
END
$$;


-- Marks the address of the token's account verified; the token is spent.
-- False for a token unknown, used or expired.
CREATE FUNCTION monetize_verify_email(p_token_hash text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_user  uuid;
BEGIN
    UPDATE email_tokens
       SET used_at = now()
     WHERE token_hash = p_token_hash
       AND purpose = 'verify'
       AND used_at IS NULL
       AND expires_at > now()
    RETURNING email_tokens.user_id INTO v_user;

    IF v_user IS NULL THEN
        RETURN false;
    END IF;

    UPDATE users
       SET email_verified = true, updated_at = now()
     WHERE id = v_user;

    RETURN true;
END
$$;


-- A new verification mail for an account not yet verified, unless one was
-- queued for the address within the last minute. Says nothing of whether
-- the account exists: the API answers 202 either way.
CREATE FUNCTION monetize_resend_verification(p_email text,
                                             p_token_hash text,
                                             p_subject text, p_text text,
                                             p_html text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_user  uuid;
BEGIN
    SELECT id INTO v_user
      FROM users
     WHERE email = p_email AND NOT email_verified
       FOR UPDATE;

    IF v_user IS NULL THEN
        RETURN false;
    END IF;

    -- the lock on the user row orders two resends of one address
    IF EXISTS (SELECT 1 FROM mail_outbox
                WHERE to_addr = p_email AND kind = 'verify'
                  AND created_at > now() - interval '1 minute')
    THEN
        RETURN false;
    END IF;

    INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at)
    VALUES (p_token_hash, v_user, 'verify', now() + interval '24 hours');

    INSERT INTO mail_outbox (user_id, kind, to_addr, subject, body_text,
                             body_html)
    VALUES (v_user, 'verify', p_email, p_subject, p_text, p_html);

    RETURN true;
END
$$;


-- The sender's claim: due rows, each taken by one worker (SKIP LOCKED),
-- leased for p_lease_ms (longer than a send may take): a worker that dies
-- while sending leaves its rows due again when the lease ends.
CREATE FUNCTION monetize_outbox_claim(p_lease_ms bigint, p_limit integer)
RETURNS TABLE (id bigint, to_addr text, subject text, body_text text,
               body_html text, attempts integer)
LANGUAGE sql AS $$
    UPDATE mail_outbox o
       SET attempts = o.attempts + 1,
           next_attempt_at = now() + p_lease_ms * interval '1 millisecond'
     WHERE o.id IN (SELECT m.id FROM mail_outbox m
                     WHERE m.sent_at IS NULL AND m.failed_at IS NULL
                       AND m.next_attempt_at <= now()
                     ORDER BY m.next_attempt_at
                     LIMIT p_limit
                       FOR UPDATE SKIP LOCKED)
    RETURNING o.id, o.to_addr, o.subject, o.body_text, o.body_html,
              o.attempts
$$;


-- Sent: once; the bodies (which may hold a token) are dropped.
CREATE FUNCTION monetize_outbox_sent(p_id bigint)
RETURNS boolean
LANGUAGE sql AS $$
    UPDATE mail_outbox
       SET sent_at = now(), body_text = NULL, body_html = NULL,
           last_error = NULL
     WHERE id = p_id AND sent_at IS NULL
    RETURNING true
$$;


-- Not sent: due again after 2^(attempts-1) seconds, at most 10 minutes;
-- after 20 attempts (about 2 hours) it has failed for good.
CREATE FUNCTION monetize_outbox_retry(p_id bigint, p_error text)
RETURNS void
LANGUAGE sql AS $$
    UPDATE mail_outbox
       SET last_error = left(p_error, 500),
           next_attempt_at = now()
               + least(power(2, attempts - 1), 600) * interval '1 second',
           failed_at = CASE WHEN attempts >= 20 THEN now() END,
           body_text = CASE WHEN attempts >= 20 THEN NULL ELSE body_text END,
           body_html = CASE WHEN attempts >= 20 THEN NULL ELSE body_html END
     WHERE id = p_id AND sent_at IS NULL
$$;


-- Housekeeping: sent mail after 7 days, failed mail after 30, tokens a day
-- after they expired or were used.
CREATE FUNCTION monetize_mail_cleanup()
RETURNS TABLE (mails bigint, tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_mails   bigint;
    v_tokens  bigint;
BEGIN
    DELETE FROM mail_outbox
     WHERE sent_at < now() - interval '7 days'
        OR failed_at < now() - interval '30 days';
    GET DIAGNOSTICS v_mails = ROW_COUNT;

    DELETE FROM email_tokens
     WHERE expires_at < now() - interval '1 day'
        OR used_at < now() - interval '1 day';
    GET DIAGNOSTICS v_tokens = ROW_COUNT;

    RETURN QUERY SELECT v_mails, v_tokens;
END
$$;
