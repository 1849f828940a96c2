-- Payments, Stripe-style idempotency keys and the transactional outbox.

CREATE TABLE payments (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     BIGINT NOT NULL CHECK (order_id > 0),
    user_id      BIGINT NOT NULL CHECK (user_id > 0),
    amount       NUMERIC(12, 2) NOT NULL CHECK (amount >= 0),
    currency     TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- processing: the order is claimed and the card is being charged.
    status       TEXT NOT NULL DEFAULT 'processing'
                 CHECK (status IN ('processing', 'succeeded', 'failed', 'refunded')),
    failure_code TEXT CHECK (failure_code ~ '^[a-z_]{1,40}$'),
    -- Only the brand and the last four digits; never the number, never the CVC.
    card_brand   TEXT NOT NULL CHECK (card_brand ~ '^[a-z]{1,20}$'),
    card_last4   TEXT NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'failed') = (failure_code IS NOT NULL) OR status = 'refunded')
);
-- At most one payment per order that is being charged, has been charged or was refunded:
-- whatever the concurrency and whatever the idempotency keys, an order is charged once.
CREATE UNIQUE INDEX payments_one_charge_per_order ON payments (order_id)
    WHERE status IN ('processing', 'succeeded', 'refunded');
CREATE INDEX payments_order_idx ON payments (order_id, id DESC);
CREATE INDEX payments_user_idx ON payments (user_id, id DESC);
CREATE INDEX payments_processing_idx ON payments (updated_at) WHERE status = 'processing';

-- Idempotency keys, scoped per user. The primary key makes concurrent duplicates collide; the
-- request hash tells a replay from a different request under the same key; `payment_id` is set
-- in the transaction that settles the payment, so a finished key always has its answer.
CREATE TABLE idempotency_keys (
    user_id      BIGINT NOT NULL,
    key          TEXT NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash BYTEA NOT NULL,
    payment_id   BIGINT REFERENCES payments (id) ON DELETE CASCADE,
    locked_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Events that must reach the Orders service, written in the same transaction as the payment
-- change they announce and delivered by the relay until Orders acknowledges them.
CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('payment.succeeded', 'payment.refunded')),
    payment_id      BIGINT NOT NULL REFERENCES payments (id),
    order_id        BIGINT NOT NULL,
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A delivery in progress holds the event until then (a crashed one lets go by itself).
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    UNIQUE (payment_id, kind)
);
-- Only undelivered events are ever scanned (by id, oldest first), however long the history.
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered_idx ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
