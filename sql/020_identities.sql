-- nginx-monetize: accounts of an identity provider's users (issue 12,
-- monetize_jwks). A JWT's (iss, sub) names one account; the gate and the
-- API find it here, and monetize_jwt_autoprovision makes it on first sight.


CREATE TABLE identities (
    issuer      text NOT NULL,
    subject     text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX identities_user_id ON identities (user_id);


-- The account of (p_issuer, p_subject), made when p_create and it has none.
-- A new account takes p_email (an address the provider verified) unless
-- another account has it: an identity is never joined to an existing
-- account by its address, since whoever can set that claim at some
-- provider would take the account. Without an address of its own it gets
-- a placeholder that no mail is sent to and no login matches (its
-- password hash is no bcrypt hash). Two first calls at once make one
-- account: the second waits on the first's lock and finds its row.
CREATE FUNCTION monetize_identity_user(p_issuer text, p_subject text,
                                       p_create boolean, p_email text,
                                       p_signup_credits bigint)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_user      uuid;
    v_email     text;
    v_verified  boolean;
BEGIN
    SELECT i.user_id INTO v_user
      FROM identities i
     WHERE i.issuer = p_issuer AND i.subject = p_subject;

    IF v_user IS NOT NULL OR NOT p_create THEN
        RETURN v_user;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended(
        'identity:' || p_issuer || chr(10) || p_subject, 0));

    SELECT i.user_id INTO v_user
      FROM identities i
     WHERE i.issuer = p_issuer AND i.subject = p_subject;

    IF v_user IS NOT NULL THEN
        RETURN v_user;
    END IF;

    v_email := lower(nullif(p_email, ''));
    v_verified := v_email IS NOT NULL;

    IF v_email IS NULL
       OR EXISTS (SELECT 1 FROM users u WHERE u.email = v_email)
    THEN
        v_email := 'jwt-' || md5(p_issuer || chr(10) || p_subject)
                   || '@identities.invalid';
        v_verified := false;
    END IF;

    INSERT INTO users (email, password_hash, email_verified)
    VALUES (v_email, '!identity', v_verified)
    RETURNING id INTO v_user;

    INSERT INTO balances (user_id) VALUES (v_user);

    INSERT INTO identities (issuer, subject, user_id)
    VALUES (p_issuer, p_subject, v_user);

    IF p_signup_credits > 0 THEN
        PERFORM monetize_credit(v_user, p_signup_credits, 'signup',
                                'signup:' || v_user);
    END IF;

    RETURN v_user;
END
$$;



-- Scopes (monetize_gate on scope=NAME): what an API key may be used for,
-- given when it is made (POST /keys {"scopes": [...]}). A key made without
-- any passes only where no scope is asked.
ALTER TABLE api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';


-- monetize_create_key of sql/003, with the key's scopes.
CREATE FUNCTION monetize_create_key(p_user uuid, p_key_hash text,
                                    p_prefix text, p_name text,
                                    p_expires_in bigint, p_max_active bigint,
                                    p_scopes text[])
RETURNS TABLE (created boolean, id uuid, name text, expires_at text)
LANGUAGE plpgsql AS $$
DECLARE
    v_res  record;
BEGIN
    SELECT * INTO v_res
      FROM monetize_create_key(p_user, p_key_hash, p_prefix, p_name,
                               p_expires_in, p_max_active) AS c;

    IF v_res.created THEN
        UPDATE api_keys k SET scopes = coalesce(p_scopes, '{}')
         WHERE k.id = v_res.id;
    END IF;

    RETURN QUERY SELECT v_res.created, v_res.id, v_res.name,
                        v_res.expires_at;
END
$$;


-- monetize_rotate_key of sql/003, whose new key keeps the old one's scopes.
CREATE FUNCTION monetize_rotate_key(p_user uuid, p_old uuid,
                                    p_key_hash text, p_prefix text,
                                    p_grace bigint, p_max_active bigint,
                                    p_keep_scopes boolean)
RETURNS TABLE (outcome text, id uuid, name text, expires_at text)
LANGUAGE plpgsql AS $$
DECLARE
    v_res  record;
BEGIN
    SELECT * INTO v_res
      FROM monetize_rotate_key(p_user, p_old, p_key_hash, p_prefix, p_grace,
                               p_max_active) AS r;

    IF v_res.outcome = 'rotated' AND p_keep_scopes THEN
        UPDATE api_keys k
           SET scopes = (SELECT o.scopes FROM api_keys o WHERE o.id = p_old)
         WHERE k.id = v_res.id;
    END IF;

    RETURN QUERY SELECT v_res.outcome, v_res.id, v_res.name,
                        v_res.expires_at;
END
$$;
