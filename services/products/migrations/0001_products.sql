-- The catalogue and stock reservations of the Products service.

CREATE TABLE products (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 10000),
    price       NUMERIC(12, 2) NOT NULL CHECK (price >= 0),
    currency    TEXT NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    category    TEXT CHECK (category IS NULL OR char_length(category) BETWEEN 1 AND 100),
    -- Units in the warehouse, and the part of them held by active reservations.
    -- What can be bought ("stock") is on_hand - reserved; neither can go negative or cross.
    on_hand     BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved    BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    search      TSVECTOR GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', name), 'A') ||
                    setweight(to_tsvector('english', coalesce(category, '')), 'B') ||
                    setweight(to_tsvector('english', description), 'C')) STORED,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- Each listing sort has an index ending in id (the tie-breaker), so a page is an index scan.
CREATE INDEX products_search_idx ON products USING GIN (search);
CREATE INDEX products_category_id_idx ON products (category, id);
CREATE INDEX products_price_id_idx ON products (price, id);
CREATE INDEX products_name_id_idx ON products (name, id);
CREATE INDEX products_created_id_idx ON products (created_at DESC, id);

-- One reservation per order: the primary key makes ReserveStock idempotent per order id.
CREATE TABLE reservations (
    order_id   BIGINT PRIMARY KEY CHECK (order_id > 0),
    status     TEXT NOT NULL CHECK (status IN ('active', 'committed', 'released', 'expired', 'returned')),
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX reservations_active_expiry_idx ON reservations (expires_at) WHERE status = 'active';

-- No foreign key to products: a product may be deleted once nothing holds it, and the history
-- of past reservations stays.
CREATE TABLE reservation_lines (
    order_id   BIGINT NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    product_id BIGINT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
