-- The payment that paid an order: makes MarkPaid idempotent per payment id and lets no second
-- payment pay the same order.
ALTER TABLE orders ADD COLUMN payment_id BIGINT CHECK (payment_id > 0);
ALTER TABLE orders ADD CONSTRAINT orders_paid_has_payment
    CHECK (status NOT IN ('paid', 'refunded') OR payment_id IS NOT NULL);
