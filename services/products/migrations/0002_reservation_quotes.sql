-- Each reserved line's product name and price as they were when its stock was held (read under
-- the hold's row lock): ReserveStock answers them, and a retry for the same order answers the
-- same, so Orders prices an order from its reservation. NULL on lines reserved before they were
-- kept.
ALTER TABLE reservation_lines
    ADD COLUMN name       TEXT,
    ADD COLUMN unit_price NUMERIC(12, 2),
    ADD COLUMN currency   TEXT;
