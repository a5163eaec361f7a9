-- nginx-monetize: what the gate needs.
--
-- The gate debits calls in batches: while one batch statement is in flight,
-- a worker gathers the next calls and debits them together. Each call has a
-- unique reference ("call:<request id>"); a batch retried after a lost
-- connection reports the calls it already debited as admitted and debits
-- nothing twice.


-- For each account in the batch, in a fixed order (no deadlock between
-- workers), lock its balance and admit its calls in arrival order while the
-- balance pays for them; a call it cannot pay is refused and a later,
-- cheaper one may still pass. One ledger row per admitted call.
CREATE FUNCTION monetize_debit(p_users uuid[], p_keys uuid[],
                               p_costs bigint[], p_refs text[])
RETURNS TABLE (idx integer, admitted boolean, balance bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := coalesce(array_length(p_users, 1), 0);
    v_user     uuid;
    v_balance  bigint;
    v_done     text[];
    v_admit    boolean[] := array_fill(false, ARRAY[n]);
    v_new      boolean[] := array_fill(false, ARRAY[n]);
    v_after    bigint[] := array_fill(0::bigint, ARRAY[n]);
    i          integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;

    SELECT coalesce(array_agg(l.reference), '{}') INTO v_done
      FROM credit_ledger l WHERE l.reference = ANY (p_refs);

    FOR v_user IN SELECT DISTINCT u FROM unnest(p_users) AS u ORDER BY u
    LOOP
        SELECT b.balance INTO v_balance FROM balances b
         WHERE b.user_id = v_user FOR UPDATE;

        v_balance := coalesce(v_balance, 0);

        FOR i IN 1 .. n LOOP
            CONTINUE WHEN p_users[i] <> v_user;

            IF p_refs[i] = ANY (v_done) THEN
                v_admit[i] := true;

            ELSIF p_costs[i] <= v_balance THEN
                v_balance := v_balance - p_costs[i];
                v_admit[i] := true;
                v_new[i] := p_costs[i] > 0;
            END IF;

            v_after[i] := v_balance;
        END LOOP;

        UPDATE balances b SET balance = v_balance, updated_at = now()
         WHERE b.user_id = v_user AND b.balance <> v_balance;
    END LOOP;

    INSERT INTO credit_ledger (user_id, delta, kind, reference, api_key_id,
                               balance_after)
    SELECT p_users[k], -p_costs[k], 'debit', p_refs[k], p_keys[k], v_after[k]
      FROM generate_subscripts(p_users, 1) AS k
     WHERE v_new[k];

    -- fresh enough for a listing, at most one write per key a minute
    UPDATE api_keys a SET last_used_at = now()
     WHERE a.id = ANY (p_keys)
       AND (a.last_used_at IS NULL
            OR a.last_used_at < now() - interval '1 minute');

    RETURN QUERY SELECT k, v_admit[k], v_after[k]
                   FROM generate_subscripts(p_users, 1) AS k;
END
$$;


-- Refunds of calls whose upstream failed: each refers to its debit, once.
-- A refund whose debit is not in the ledger is skipped.
CREATE FUNCTION monetize_refund(p_debit_refs text[])
RETURNS TABLE (reference text, applied boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_ref    text;
    v_debit  credit_ledger%ROWTYPE;
    v_res    record;
BEGIN
    FOREACH v_ref IN ARRAY p_debit_refs LOOP
        SELECT * INTO v_debit FROM credit_ledger l
         WHERE l.reference = v_ref AND l.kind = 'debit';

        IF NOT FOUND THEN
            RETURN QUERY SELECT v_ref, false;
            CONTINUE;
        END IF;

        SELECT * INTO v_res
          FROM monetize_credit(v_debit.user_id, -v_debit.delta, 'refund',
                               'refund:' || v_ref, v_debit.api_key_id,
                               jsonb_build_object('debit', v_ref));

        RETURN QUERY SELECT v_ref, v_res.applied;
    END LOOP;
END
$$;


-- Usage per account, key, location and day, added in batches.
ALTER TABLE usage ALTER COLUMN api_key_id SET NOT NULL;

CREATE FUNCTION monetize_add_usage(p_users uuid[], p_keys uuid[],
                                   p_locations text[], p_days date[],
                                   p_calls bigint[], p_credits bigint[])
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage AS u (user_id, api_key_id, location, day, calls,
                            credits)
    SELECT * FROM unnest(p_users, p_keys, p_locations, p_days, p_calls,
                         p_credits)
    ON CONFLICT (user_id, day, location, api_key_id) DO UPDATE
       SET calls = u.calls + EXCLUDED.calls,
           credits = u.credits + EXCLUDED.credits;
$$;


-- Revocation reaches every worker of every node at once: the gates LISTEN
-- and drop what they cached of a key or an account that changed.
CREATE FUNCTION monetize_notify_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monetize_keys', OLD.key_hash);

    IF TG_OP = 'UPDATE' AND NEW.key_hash <> OLD.key_hash THEN
        PERFORM pg_notify('monetize_keys', NEW.key_hash);
    END IF;

    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_notify
    AFTER UPDATE OF revoked_at, expires_at, user_id, key_hash OR DELETE
    ON api_keys FOR EACH ROW
    EXECUTE FUNCTION monetize_notify_key();

CREATE FUNCTION monetize_notify_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('monetize_users', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_notify
    AFTER UPDATE OF suspended_at ON users FOR EACH ROW
    WHEN (OLD.suspended_at IS DISTINCT FROM NEW.suspended_at)
    EXECUTE FUNCTION monetize_notify_user();
