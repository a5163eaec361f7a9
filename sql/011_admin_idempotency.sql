-- nginx-monetize: POST /admin/credits with an idempotency key.
--
-- An operator's grant that is sent again (a retry after a lost answer, a
-- double click) must not grant twice. With p_key, the ledger reference is
-- "admin:key:<key>": the same key again, for the same account and amount,
-- writes nothing and answers the first entry ('replayed'); for another
-- account or amount, 'conflict'. Without a key, as before: every call is a
-- new entry.
CREATE FUNCTION monetize_admin_credit(p_actor uuid, p_user uuid,
                                      p_amount bigint, p_reason text,
                                      p_address text, p_key text)
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
                           CASE WHEN p_key IS NULL
                                THEN 'admin:' || gen_random_uuid()
                                ELSE 'admin:key:' || p_key END,
                           NULL,
                           jsonb_build_object('reason', p_reason,
                                              'by', p_actor));

    IF NOT v_res.applied AND v_res.entry_id IS NULL THEN
        RETURN QUERY SELECT 'insufficient'::text,
                            json_build_object('balance', v_res.balance);
        RETURN;
    END IF;

    SELECT * INTO v_row FROM credit_ledger l WHERE l.id = v_res.entry_id;

    IF NOT v_res.applied THEN
        RETURN QUERY
        SELECT CASE WHEN v_row.user_id = p_user AND v_row.delta = p_amount
                         AND v_row.kind = v_kind
                    THEN 'replayed' ELSE 'conflict' END,
               json_build_object(
                   'id', v_row.id, 'user_id', v_row.user_id,
                   'amount', v_row.delta, 'kind', v_row.kind,
                   'reason', v_row.metadata->>'reason',
                   'balance_after', v_row.balance_after,
                   'created_at', monetize_iso8601(v_row.created_at));
        RETURN;
    END IF;

    -- the key only where one was given
    PERFORM monetize_audit(p_actor, 'credits.' || v_kind, 'user:' || p_user,
                           p_user,
                           jsonb_strip_nulls(jsonb_build_object(
                               'amount', p_amount, 'reason', p_reason,
                               'entry_id', v_row.id,
                               'balance_after', v_row.balance_after,
                               'idempotency_key', p_key)),
                           p_address);

    RETURN QUERY SELECT 'applied'::text, json_build_object(
        'id', v_row.id, 'user_id', v_row.user_id, 'amount', v_row.delta,
        'kind', v_row.kind, 'reason', p_reason,
        'balance_after', v_row.balance_after,
        'created_at', monetize_iso8601(v_row.created_at));
END
$$;

DROP FUNCTION monetize_admin_credit(uuid, uuid, bigint, text, text);
