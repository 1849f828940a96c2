-- When the current holder claimed an idempotency key: a key claimed but unanswered for longer
-- than the lease belongs to a request that died, and the next duplicate takes it over
-- (crates/shared/src/idempotency.rs).
ALTER TABLE idempotency_keys ADD COLUMN locked_at TIMESTAMPTZ NOT NULL DEFAULT now();
