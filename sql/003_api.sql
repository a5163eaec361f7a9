-- nginx-monetize: what the management API's key and credit endpoints need.
--
-- Each operation that changes more than one row, or must decide on rows it
-- has locked, is one function: one round trip, one transaction.


-- Timestamps in answers: ISO 8601 in UTC, whatever the session's TimeZone
-- and DateStyle.
CREATE FUNCTION monetize_iso8601(p_time timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(p_time AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;


-- Keys that let a caller in now: not revoked, not expired.
CREATE FUNCTION monetize_active_keys(p_user uuid, p_except uuid)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM api_keys k
     WHERE k.user_id = p_user
       AND k.id IS DISTINCT FROM p_except
       AND k.revoked_at IS NULL
       AND (k.expires_at IS NULL OR k.expires_at > now())
$$;


-- A new key for an account that has fewer than p_max_active active keys.
-- The account's row is locked first, so creations and rotations of one
-- account take turns and two at once cannot both pass the cap. When the cap
-- is reached nothing is written (created = false).
CREATE FUNCTION monetize_create_key(p_user uuid, p_key_hash text,
                                    p_prefix text, p_name text,
                                    p_expires_in bigint, p_max_active bigint)
RETURNS TABLE (created boolean, id uuid, name text, expires_at text)
LANGUAGE plpgsql AS $$
DECLARE
    v_key  api_keys%ROWTYPE;
BEGIN
    PERFORM 1 FROM users u WHERE u.id = p_user FOR NO KEY UPDATE;

    IF monetize_active_keys(p_user, NULL) >= p_max_active THEN
        RETURN QUERY SELECT false, NULL::uuid, NULL::text, NULL::text;
        RETURN;
    END IF;

    INSERT INTO api_keys (user_id, key_hash, prefix, name, expires_at)
    VALUES (p_user, p_key_hash, p_prefix, coalesce(p_name, 'default'),
            now() + p_expires_in * interval '1 second')
    RETURNING * INTO v_key;

    RETURN QUERY SELECT true, v_key.id, v_key.name,
                        monetize_iso8601(v_key.expires_at);
END
$$;


-- Rotation: a new key with the old one's name and expiry, and the old one
-- cut to expire within p_grace seconds. Only an active key of the account
-- rotates; the outcome says why another does not ('not_found', 'revoked',
-- 'expired') or that the cap forbids the new key ('too_many'; during a
-- grace period both keys count).
CREATE FUNCTION monetize_rotate_key(p_user uuid, p_old uuid,
                                    p_key_hash text, p_prefix text,
                                    p_grace bigint, p_max_active bigint)
RETURNS TABLE (outcome text, id uuid, name text, expires_at text)
LANGUAGE plpgsql AS $$
DECLARE
    v_old     api_keys%ROWTYPE;
    v_new     api_keys%ROWTYPE;
    v_needed  bigint;
BEGIN
    PERFORM 1 FROM users u WHERE u.id = p_user FOR NO KEY UPDATE;

    SELECT * INTO v_old FROM api_keys k
     WHERE k.id = p_old AND k.user_id = p_user FOR UPDATE;

    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found'::text, NULL::uuid, NULL::text,
                            NULL::text;
        RETURN;
    END IF;

    IF v_old.revoked_at IS NOT NULL THEN
        RETURN QUERY SELECT 'revoked'::text, v_old.id, v_old.name,
                            monetize_iso8601(v_old.expires_at);
        RETURN;
    END IF;

    -- clock_timestamp(), not now(): a rotation of this key that committed
    -- while we waited for its lock set expires_at to its own now(), which
    -- may be later than ours; it must still count as done.
    IF v_old.expires_at <= clock_timestamp() THEN
        RETURN QUERY SELECT 'expired'::text, v_old.id, v_old.name,
                            monetize_iso8601(v_old.expires_at);
        RETURN;
    END IF;

    -- the new key, and the old one too while its grace lasts
    v_needed := monetize_active_keys(p_user, p_old) + 1
                + CASE WHEN p_grace > 0 THEN 1 ELSE 0 END;

    IF v_needed > p_max_active THEN
        RETURN QUERY SELECT 'too_many'::text, v_old.id, v_old.name,
                            monetize_iso8601(v_old.expires_at);
        RETURN;
    END IF;

    UPDATE api_keys k
       SET expires_at = least(k.expires_at,
                              now() + p_grace * interval '1 second')
     WHERE k.id = p_old;

    INSERT INTO api_keys (user_id, key_hash, prefix, name, expires_at)
    VALUES (p_user, p_key_hash, p_prefix, v_old.name, v_old.expires_at)
    RETURNING * INTO v_new;

    RETURN QUERY SELECT 'rotated'::text, v_new.id, v_new.name,
                        monetize_iso8601(v_new.expires_at);
END
$$;


-- POST /use_credit: one debit through monetize_credit(), whose reference
-- makes it idempotent. The outcome tells a new charge ('applied') from a
-- replay of the same charge ('replayed'), a reference already used for
-- another amount ('conflict'), and a balance that cannot pay
-- ('insufficient', nothing written). balance is the balance after.
CREATE FUNCTION monetize_use_credit(p_user uuid, p_key uuid, p_amount bigint,
                                    p_reference text)
RETURNS TABLE (outcome text, balance bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_res    record;
    v_entry  credit_ledger%ROWTYPE;
BEGIN
    SELECT * INTO v_res
      FROM monetize_credit(p_user, -p_amount, 'use_credit', p_reference,
                           p_key);

    IF v_res.applied THEN
        RETURN QUERY SELECT 'applied'::text, v_res.balance;
        RETURN;
    END IF;

    IF v_res.entry_id IS NULL THEN
        RETURN QUERY SELECT 'insufficient'::text, v_res.balance;
        RETURN;
    END IF;

    SELECT * INTO v_entry FROM credit_ledger l WHERE l.id = v_res.entry_id;

    IF v_entry.user_id = p_user AND v_entry.kind = 'use_credit'
       AND v_entry.delta = -p_amount
    THEN
        RETURN QUERY SELECT 'replayed'::text, v_res.balance;
    ELSE
        RETURN QUERY SELECT 'conflict'::text, v_res.balance;
    END IF;
END
$$;
