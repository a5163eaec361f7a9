-- nginx-monetize: download tokens (README, "Downloads").
--
-- products: what paying accounts may download, and which plans include it.
-- source is the operator's record of where the file is (a path under the
-- download location's root, or the upstream URI it proxies to); nginx's
-- location serves it, the API never shows it.
--
-- download_logs: one row per download that a token let through, written
-- by each worker in batches from the log phase (bytes: of the body sent).

CREATE TABLE products (
    id                  text PRIMARY KEY
                        CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name                text NOT NULL,
    source              text NOT NULL,
    plans               text[] NOT NULL DEFAULT '{}',
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now()
);


CREATE TABLE download_logs (
    id                  bigserial PRIMARY KEY,
    user_id             uuid NOT NULL,      -- kept when the account goes
    product_id          text NOT NULL,
    address             text NOT NULL,
    bytes               bigint NOT NULL CHECK (bytes >= 0),
    status              integer NOT NULL,
    downloaded_at       timestamptz NOT NULL
);

CREATE INDEX download_logs_user ON download_logs (user_id, downloaded_at);


-- The products the account's plan includes now (monetize_plan_of: its
-- subscription's plan, or free). A suspended account never gets this far:
-- the API refuses its credentials.
CREATE FUNCTION monetize_downloadable(p_user uuid)
RETURNS TABLE (id text, name text)
LANGUAGE sql STABLE AS $$
    SELECT p.id, p.name
      FROM products p, monetize_plan_of(p_user) pl
     WHERE p.active AND pl.plan_id = ANY (p.plans)
     ORDER BY p.id;
$$;


-- A product by id, and whether the account's plan includes it: no row for
-- an unknown or retired product.
CREATE FUNCTION monetize_download_product(p_user uuid, p_product text)
RETURNS TABLE (id text, included boolean)
LANGUAGE sql STABLE AS $$
    SELECT p.id, pl.plan_id = ANY (p.plans)
      FROM products p, monetize_plan_of(p_user) pl
     WHERE p.id = p_product AND p.active;
$$;


-- A batch of downloads, one row each (times in unix seconds).
CREATE FUNCTION monetize_log_downloads(p_users uuid[], p_products text[],
                                       p_addresses text[], p_bytes bigint[],
                                       p_statuses integer[],
                                       p_times double precision[])
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO download_logs (user_id, product_id, address, bytes, status,
                               downloaded_at)
    SELECT u, p, a, b, s, to_timestamp(t)
      FROM unnest(p_users, p_products, p_addresses, p_bytes, p_statuses,
                  p_times) AS d(u, p, a, b, s, t);
$$;
