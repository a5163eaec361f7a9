-- nginx-monetize: sessions. A login gives a short access token (a JWT the
-- server checks on its own) and a refresh token (opaque; only its keyed
-- hash is here, in refresh_tokens of 001), which is spent once for a new
-- pair in the same family.


-- Failed logins, by the address given (known or not, so that the answer
-- says nothing of which addresses have accounts): ten in fifteen minutes
-- and the address is refused until the oldest of them is fifteen minutes
-- old.
CREATE TABLE login_failures (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email               text NOT NULL,
    at                  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_failures_email ON login_failures (email, at);


-- What a login needs in one round trip: the account (none when no account
-- has the address) and, for known and unknown addresses alike, how long
-- the address is refused for (0: it is not).
CREATE FUNCTION monetize_login_lookup(p_email text)
RETURNS TABLE (user_id uuid, password_hash text, email_verified boolean,
               suspended boolean, retry_after integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_retry  integer := 0;
BEGIN
    SELECT CASE WHEN count(*) >= 10
                THEN greatest(1, ceil(extract(epoch FROM
                         min(f.at) + interval '15 minutes' - now())))::integer
                ELSE 0 END
      INTO v_retry
      FROM (SELECT l.at FROM login_failures l
             WHERE l.email = p_email
               AND l.at > now() - interval '15 minutes'
             ORDER BY l.at DESC LIMIT 10) AS f;

    RETURN QUERY
    SELECT u.id, u.password_hash, u.email_verified,
           u.suspended_at IS NOT NULL, v_retry
      FROM (SELECT 1) AS one
      LEFT JOIN users u ON u.email = p_email;
END
$$;


-- A failed login. The address's old failures go at the same time, and a
-- few of the oldest of any address, so that failures for addresses never
-- tried again do not pile up.
CREATE FUNCTION monetize_login_failed(p_email text) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM login_failures
     WHERE (email = $1 AND at < now() - interval '15 minutes')
        OR id IN (SELECT f.id FROM login_failures f
                   WHERE f.at < now() - interval '15 minutes'
                   ORDER BY f.id LIMIT 10);
    INSERT INTO login_failures (email) VALUES ($1);
$$;


-- A login that succeeded: a new family, its first refresh token.
CREATE FUNCTION monetize_session_open(p_user uuid, p_email text,
                                      p_hash text, p_ttl_s bigint)
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM login_failures WHERE email = $2;
    INSERT INTO refresh_tokens (user_id, token_hash, family, expires_at)
    VALUES ($1, $3, gen_random_uuid(), now() + $4 * interval '1 second');
$$;


-- Spends a refresh token for a new one of its family. The row is locked,
-- so of two refreshes with the same token one spends it and the other is
-- a reuse. A reuse (the token was spent already) revokes the whole family:
-- one of the two holders is a thief, and neither can be told apart.
-- outcome: 'ok' (user_id is the account), 'unknown', 'expired', 'revoked',
-- 'reused', 'suspended'.
CREATE FUNCTION monetize_session_refresh(p_hash text, p_new_hash text,
                                         p_ttl_s bigint)
RETURNS TABLE (outcome text, user_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_tok   refresh_tokens%ROWTYPE;
    v_susp  boolean;
BEGIN
    SELECT * INTO v_tok FROM refresh_tokens t
     WHERE t.token_hash = p_hash FOR UPDATE;

    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid;
        RETURN;
    END IF;

    IF v_tok.revoked_at IS NOT NULL THEN
        RETURN QUERY SELECT 'revoked'::text, NULL::uuid;
        RETURN;
    END IF;

    IF v_tok.spent_at IS NOT NULL THEN
        UPDATE refresh_tokens t SET revoked_at = now()
         WHERE t.family = v_tok.family AND t.revoked_at IS NULL;
        RETURN QUERY SELECT 'reused'::text, NULL::uuid;
        RETURN;
    END IF;

    IF v_tok.expires_at <= now() THEN
        RETURN QUERY SELECT 'expired'::text, NULL::uuid;
        RETURN;
    END IF;

    SELECT u.suspended_at IS NOT NULL INTO v_susp
      FROM users u WHERE u.id = v_tok.user_id;

    IF v_susp THEN
        RETURN QUERY SELECT 'suspended'::text, NULL::uuid;
        RETURN;
    END IF;

    UPDATE refresh_tokens t SET spent_at = now() WHERE t.id = v_tok.id;

    INSERT INTO refresh_tokens (user_id, token_hash, family, expires_at)
    VALUES (v_tok.user_id, p_new_hash, v_tok.family,
            now() + p_ttl_s * interval '1 second');

    RETURN QUERY SELECT 'ok'::text, v_tok.user_id;
END
$$;


-- Logout: the family of the token given, whatever the token's state.
CREATE FUNCTION monetize_session_close(p_hash text) RETURNS void
LANGUAGE sql AS $$
    UPDATE refresh_tokens t SET revoked_at = now()
     WHERE t.revoked_at IS NULL
       AND t.family = (SELECT s.family FROM refresh_tokens s
                        WHERE s.token_hash = $1);
$$;


-- Logout everywhere: every family of the account.
CREATE FUNCTION monetize_session_close_all(p_user uuid) RETURNS void
LANGUAGE sql AS $$
    UPDATE refresh_tokens t SET revoked_at = now()
     WHERE t.user_id = $1 AND t.revoked_at IS NULL;
$$;


-- The gate takes session tokens too. A call made with one has no API key:
-- it is recorded (gate_calls, the ledger's api_key_id, usage) under the nil
-- UUID, the "session" key, which no api_keys row has; monetize_debit (005)
-- checks only its account.


-- What the gate reads of an API key now says whether its account's address
-- is verified (monetize_require_verified_email); the columns before are
-- 006's.
DROP FUNCTION monetize_gate_key(text);

CREATE FUNCTION monetize_gate_key(p_key_hash text)
RETURNS TABLE (key_id uuid, key_user uuid, key_revoked boolean,
               key_expires_in bigint, user_suspended boolean,
               user_balance bigint, plan text, plan_rps integer,
               plan_burst integer, user_verified boolean)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT k.id, k.user_id, k.revoked_at IS NOT NULL,
           floor(extract(epoch FROM k.expires_at - now()) * 1000)::bigint,
           u.suspended_at IS NOT NULL, coalesce(b.balance, 0),
           p.id, p.rate_limit_rps, p.rate_limit_burst, u.email_verified
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


-- The same for a session token's account: the nil UUID as its key, which
-- is never revoked and never expires (the token's own exp does).
CREATE FUNCTION monetize_gate_session(p_user uuid)
RETURNS TABLE (key_id uuid, key_user uuid, key_revoked boolean,
               key_expires_in bigint, user_suspended boolean,
               user_balance bigint, plan text, plan_rps integer,
               plan_burst integer, user_verified boolean)
LANGUAGE sql AS $$
    SELECT '00000000-0000-0000-0000-000000000000'::uuid, u.id, false,
           NULL::bigint, u.suspended_at IS NOT NULL, coalesce(b.balance, 0),
           p.id, p.rate_limit_rps, p.rate_limit_burst, u.email_verified
      FROM users u
      LEFT JOIN balances b ON b.user_id = u.id
      LEFT JOIN plans p ON p.id = (SELECT o.plan_id
                                     FROM monetize_plan_of(u.id) AS o)
     WHERE u.id = $1;
$$;


-- The gates' caches hold whether an address is verified: a change is told
-- as a suspension is.
CREATE TRIGGER users_notify_verified
    AFTER UPDATE OF email_verified ON users FOR EACH ROW
    WHEN (OLD.email_verified IS DISTINCT FROM NEW.email_verified)
    EXECUTE FUNCTION monetize_notify_user();
