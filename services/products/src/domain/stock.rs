//! Stock reservations: the lines an order holds, and the command that reserves them.

use ecom_shared::FieldError;

/// The largest quantity of one line of a reservation.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// One line of a reservation: a product and a positive quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Line {
    pub product_id: i64,
    pub quantity: i64,
}

/// A reserved line's product as it was when its stock was held (read under the hold's row
/// lock): what the order is priced at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub product_id: i64,
    pub name: String,
    pub unit_price: rust_decimal::Decimal,
    pub currency: String,
}

/// Validated reservation lines: non-empty, positive ids and quantities, one line per product,
/// sorted by product id (the order rows are locked in, so concurrent reservations cannot deadlock).
pub fn parse_lines(raw: &[(i64, i64)]) -> Result<Vec<Line>, Vec<FieldError>> {
    if raw.is_empty() {
        return Err(vec![FieldError::new("lines", "must not be empty")]);
    }
    if raw.len() > 100 {
        return Err(vec![FieldError::new("lines", "at most 100 lines")]);
    }
    let mut errors = Vec::new();
    let mut lines: Vec<Line> = Vec::with_capacity(raw.len());
    for (i, (product_id, quantity)) in raw.iter().copied().enumerate() {
        if product_id <= 0 {
            errors.push(FieldError::new(
                format!("lines[{i}].product_id"),
                "must be a positive integer",
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            errors.push(FieldError::new(
                format!("lines[{i}].quantity"),
                "must be between 1 and 1000000",
            ));
        }
        match lines.iter_mut().find(|l| l.product_id == product_id) {
            Some(l) => l.quantity = l.quantity.saturating_add(quantity),
            None => lines.push(Line {
                product_id,
                quantity,
            }),
        }
    }
    if lines.iter().any(|l| l.quantity > MAX_QUANTITY) {
        errors.push(FieldError::new(
            "lines",
            "a product's total quantity must be at most 1000000",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    lines.sort();
    Ok(lines)
}

/// Hold stock for an order: every line or none (the gRPC `ReserveStock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveStock {
    pub order_id: i64,
    /// Merged per product and sorted by product id ([`parse_lines`]).
    pub lines: Vec<Line>,
}

impl ReserveStock {
    /// Every bad field at once: the order id and the lines.
    pub fn new(order_id: i64, raw_lines: &[(i64, i64)]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if order_id <= 0 {
            errors.push(FieldError::new("order_id", "must be a positive integer"));
        }
        let lines = parse_lines(raw_lines).map_err(|e| errors.extend(e)).ok();
        match lines {
            Some(lines) if errors.is_empty() => Ok(Self { order_id, lines }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_merged_sorted_and_bounded() {
        assert_eq!(
            parse_lines(&[(5, 1), (2, 2), (5, 3)]),
            Ok(vec![
                Line {
                    product_id: 2,
                    quantity: 2
                },
                Line {
                    product_id: 5,
                    quantity: 4
                }
            ])
        );
        assert!(parse_lines(&[]).is_err());
        assert!(parse_lines(&[(1, 0)]).is_err());
        assert!(parse_lines(&[(0, 1)]).is_err());
        assert!(parse_lines(&[(1, 1_000_001)]).is_err());
    }

    #[test]
    fn a_reservation_reports_the_order_id_and_the_lines_together() {
        let errors = ReserveStock::new(0, &[(1, 0)]).expect_err("bad");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["order_id", "lines[0].quantity"]);
        assert_eq!(
            ReserveStock::new(7, &[(3, 1), (2, 1)]).map(|r| r.lines[0].product_id),
            Ok(2)
        );
    }
}
