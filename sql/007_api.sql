-- 007: the management API.

-- /usage sums all of an account's use: a charge through /use_credit is one
-- call of its amount, at the location 'use_credit' (no nginx location has
-- a name without a leading / or @), counted in the same transaction as the
-- charge. A replay, a conflict or a balance that cannot pay counts nothing.
CREATE OR REPLACE FUNCTION monetize_use_credit(p_user uuid, p_key uuid,
                                               p_amount bigint,
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
        PERFORM monetize_add_usage(ARRAY[p_user], ARRAY[p_key],
                                   ARRAY['use_credit'],
                                   ARRAY[(now() AT TIME ZONE 'UTC')::date],
                                   ARRAY[1::bigint], ARRAY[p_amount]);

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

-- The charges made before: from the ledger, which has them all.
INSERT INTO usage AS u (user_id, api_key_id, location, day, calls, credits)
SELECT user_id, api_key_id, 'use_credit',
       (created_at AT TIME ZONE 'UTC')::date, count(*), -sum(delta)
  FROM credit_ledger
 WHERE kind = 'use_credit' AND api_key_id IS NOT NULL
 GROUP BY 1, 2, 4
ON CONFLICT (user_id, day, location, api_key_id) DO UPDATE
   SET calls = u.calls + EXCLUDED.calls,
       credits = u.credits + EXCLUDED.credits;
