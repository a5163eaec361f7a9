-- nginx-monetize: the foundation schema.
--
-- Money rule: credits are integers; credit_ledger is append-only and every
-- change of a balance is a ledger row written in the same transaction
-- (monetize_credit below), so balances.balance = sum(credit_ledger.delta)
-- per user at every commit.

CREATE TABLE users (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email               text NOT NULL CHECK (email = lower(email)),
    password_hash       text NOT NULL,
    name                text,
    email_verified      boolean NOT NULL DEFAULT false,
    is_admin            boolean NOT NULL DEFAULT false,
    suspended_at        timestamptz,
    stripe_customer_id  text UNIQUE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (email);


CREATE TABLE plans (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    price_cents         integer NOT NULL CHECK (price_cents >= 0),
    currency            text NOT NULL DEFAULT 'usd',
    interval            text NOT NULL DEFAULT 'month'
                        CHECK (interval IN ('month', 'year')),
    monthly_quota       bigint CHECK (monthly_quota > 0),  -- NULL: unlimited
    rate_limit_rps      integer NOT NULL,
    rate_limit_burst    integer NOT NULL,
    stripe_price_id     text,
    sort_order          integer NOT NULL DEFAULT 0,
    active              boolean NOT NULL DEFAULT true,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

INSERT INTO plans (id, name, price_cents, monthly_quota,
                   rate_limit_rps, rate_limit_burst, sort_order)
VALUES ('free',         'Free',            0,    100,   2,    5, 0),
       ('starter',      'Starter',      2900,  10000,  10,   20, 1),
       ('professional', 'Professional', 9900, 100000,  50,  100, 2),
       ('enterprise',   'Enterprise',  49900,   NULL, 500, 1000, 3);


CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    key_hash            text NOT NULL UNIQUE,   -- hex HMAC-SHA256 of the key
    prefix              text NOT NULL,          -- shown to the owner
    name                text NOT NULL DEFAULT 'default',
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_used_at        timestamptz,
    expires_at          timestamptz,
    revoked_at          timestamptz
);

CREATE INDEX api_keys_user_id ON api_keys (user_id);


CREATE TABLE balances (
    user_id             uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    balance             bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE credit_ledger (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users,
    delta               bigint NOT NULL CHECK (delta <> 0),
    kind                text NOT NULL CHECK (kind IN ('signup', 'purchase',
                            'debit', 'refund', 'use_credit', 'admin',
                            'subscription')),
    reference           text NOT NULL UNIQUE,   -- no event applied twice
    api_key_id          uuid,
    balance_after       bigint NOT NULL CHECK (balance_after >= 0),
    metadata            jsonb,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX credit_ledger_user ON credit_ledger (user_id, id);

CREATE FUNCTION monetize_ledger_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_ledger is append-only (% refused)', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER credit_ledger_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON credit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION monetize_ledger_is_append_only();


CREATE TABLE usage (
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    api_key_id          uuid,
    location            text NOT NULL DEFAULT '',
    day                 date NOT NULL,
    calls               bigint NOT NULL DEFAULT 0,
    credits             bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day, location, api_key_id)
);


CREATE TABLE webhook_events (
    id                  text PRIMARY KEY,       -- the provider's event id
    provider            text NOT NULL DEFAULT 'stripe',
    type                text NOT NULL,
    payload             jsonb NOT NULL,
    received_at         timestamptz NOT NULL DEFAULT now(),
    processed_at        timestamptz
);


CREATE TABLE email_tokens (
    token_hash          text PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    purpose             text NOT NULL CHECK (purpose IN ('verify', 'reset')),
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE refresh_tokens (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    token_hash          text NOT NULL UNIQUE,
    family              uuid NOT NULL,
    expires_at          timestamptz NOT NULL,
    spent_at            timestamptz,
    revoked_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX refresh_tokens_family ON refresh_tokens (family);


CREATE TABLE subscriptions (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                 uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    plan_id                 text NOT NULL REFERENCES plans,
    status                  text NOT NULL CHECK (status IN ('incomplete',
                                'trialing', 'active', 'past_due',
                                'canceled', 'unpaid')),
    stripe_subscription_id  text UNIQUE,
    current_period_start    timestamptz,
    current_period_end      timestamptz,
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscriptions_user ON subscriptions (user_id);


CREATE TABLE audit_log (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_user_id       uuid,
    action              text NOT NULL,
    target              text,
    details             jsonb,
    created_at          timestamptz NOT NULL DEFAULT now()
);


-- The one way a balance changes: a ledger row and the balance in one
-- transaction. The balance row is locked first, so concurrent calls for one
-- user serialize and a retried reference sees the entry it made: it returns
-- that entry (applied = false) and changes nothing. A debit the balance
-- cannot pay changes nothing either (applied = false, entry_id NULL).
CREATE FUNCTION monetize_credit(p_user uuid, p_delta bigint, p_kind text,
                                p_reference text, p_api_key uuid DEFAULT NULL,
                                p_metadata jsonb DEFAULT NULL)
RETURNS TABLE (applied boolean, entry_id bigint, balance bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_balance  bigint;
    v_entry    bigint;
BEGIN
    INSERT INTO balances (user_id) VALUES (p_user)
        ON CONFLICT ON CONSTRAINT balances_pkey DO NOTHING;

    SELECT b.balance INTO v_balance FROM balances b
     WHERE b.user_id = p_user FOR UPDATE;

    SELECT l.id INTO v_entry FROM credit_ledger l
     WHERE l.reference = p_reference;

    IF FOUND THEN
        RETURN QUERY SELECT false, v_entry, v_balance;
        RETURN;
    END IF;

    IF v_balance + p_delta < 0 THEN
        RETURN QUERY SELECT false, NULL::bigint, v_balance;
        RETURN;
    END IF;

    v_balance := v_balance + p_delta;

    UPDATE balances b SET balance = v_balance, updated_at = now()
     WHERE b.user_id = p_user;

    INSERT INTO credit_ledger (user_id, delta, kind, reference, api_key_id,
                               balance_after, metadata)
    VALUES (p_user, p_delta, p_kind, p_reference, p_api_key, v_balance,
            p_metadata)
    RETURNING id INTO v_entry;

    RETURN QUERY SELECT true, v_entry, v_balance;
END
$$;


-- Registration in one transaction: the user, a first API key, a balance
-- and the signup grant. A taken email raises unique_violation on
-- users_email_key.
CREATE FUNCTION monetize_register(p_email text, p_password_hash text,
                                  p_name text, p_key_hash text,
                                  p_key_prefix text, p_signup_credits bigint)
RETURNS TABLE (user_id uuid, api_key_id uuid, balance bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_user  uuid;
    v_key   uuid;
BEGIN
    INSERT INTO users (email, password_hash, name)
    VALUES (p_email, p_password_hash, p_name)
    RETURNING id INTO v_user;

    INSERT INTO api_keys (user_id, key_hash, prefix)
    VALUES (v_user, p_key_hash, p_key_prefix)
    RETURNING id INTO v_key;

    INSERT INTO balances (user_id) VALUES (v_user);

    IF p_signup_credits > 0 THEN
        PERFORM monetize_credit(v_user, p_signup_credits, 'signup',
                                'signup:' || v_user);
    END IF;

    RETURN QUERY SELECT v_user, v_key, b.balance
                   FROM balances b WHERE b.user_id = v_user;
END
$$;
