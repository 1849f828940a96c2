//! Orders' domain types: the order, its state machine, and validated input.

use chrono::{DateTime, Utc};
use ecom_shared::FieldError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An order's state. The only moves: `pending_payment → paid | cancelled`, `paid → refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending_payment" => Self::PendingPayment,
            "paid" => Self::Paid,
            "cancelled" => Self::Cancelled,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }

    /// Whether the state machine allows `self → to`.
    pub fn can_become(self, to: Self) -> bool {
        matches!(
            (self, to),
            (Self::PendingPayment, Self::Paid | Self::Cancelled) | (Self::Paid, Self::Refunded)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItem {
    pub product_id: i64,
    pub name: String,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "19.99")]
    pub unit_price: Decimal,
    pub quantity: i64,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "39.98")]
    pub line_total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "39.98")]
    pub total: Decimal,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The payment that paid the order (null until paid).
    #[serde(default)]
    pub payment_id: Option<i64>,
}

/// The most units of one product in one order, and lines in one order.
pub const MAX_QUANTITY: i64 = 1000;
pub const MAX_LINES: usize = 50;
/// The largest amount `numeric(12, 2)` holds.
pub fn max_amount() -> Decimal {
    Decimal::new(999_999_999_999, 2)
}

/// One requested line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Line {
    pub product_id: i64,
    pub quantity: i64,
}

/// Parses `items` from a request body: non-empty, positive integer ids and quantities
/// (1..=1000), duplicates merged, sorted by product id.
pub fn parse_items(items: &serde_json::Value) -> Result<Vec<Line>, Vec<FieldError>> {
    let Some(raw) = items.as_array() else {
        return Err(vec![FieldError::new(
            "items",
            "must be a list of {product_id, quantity}",
        )]);
    };
    if raw.is_empty() {
        return Err(vec![FieldError::new("items", "must not be empty")]);
    }
    if raw.len() > MAX_LINES {
        return Err(vec![FieldError::new("items", "at most 50 lines")]);
    }
    let mut errors = Vec::new();
    let mut lines: Vec<Line> = Vec::new();
    for (i, item) in raw.iter().enumerate() {
        // `2.0` is the integer 2 to JSON and to the document's `type: integer`.
        let product_id = item
            .get("product_id")
            .and_then(ecom_shared::json::whole_number)
            .filter(|id| *id > 0);
        let quantity = item
            .get("quantity")
            .and_then(ecom_shared::json::whole_number)
            .filter(|q| (1..=MAX_QUANTITY).contains(q));
        if product_id.is_none() {
            errors.push(FieldError::new(
                format!("items[{i}].product_id"),
                "must be a positive integer",
            ));
        }
        if quantity.is_none() {
            errors.push(FieldError::new(
                format!("items[{i}].quantity"),
                "must be a whole number from 1 to 1000",
            ));
        }
        if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
            match lines.iter_mut().find(|l| l.product_id == product_id) {
                Some(l) => l.quantity += quantity,
                None => lines.push(Line {
                    product_id,
                    quantity,
                }),
            }
        }
    }
    if lines.iter().any(|l| l.quantity > MAX_QUANTITY) {
        errors.push(FieldError::new(
            "items",
            "at most 1000 units of one product",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    lines.sort();
    Ok(lines)
}

/// A stable fingerprint of a request's lines (the idempotency key's request hash).
pub fn fingerprint(lines: &[Line]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let canonical: String = lines
        .iter()
        .map(|l| format!("{}x{};", l.product_id, l.quantity))
        .collect();
    Sha256::digest(canonical.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_state_machine_allows_only_its_moves() {
        use OrderStatus::*;
        let all = [PendingPayment, Paid, Cancelled, Refunded];
        let allowed: Vec<(OrderStatus, OrderStatus)> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (PendingPayment, Paid),
                (PendingPayment, Cancelled),
                (Paid, Refunded)
            ]
        );
    }

    #[test]
    fn items_are_validated_merged_and_sorted() {
        assert_eq!(
            parse_items(
                &json!([{"product_id": 5, "quantity": 1}, {"product_id": 2, "quantity": 2}, {"product_id": 5, "quantity": 3}])
            ),
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
        for bad in [
            json!([]),
            json!({}),
            json!([{"product_id": 1, "quantity": 0}]),
            json!([{"product_id": 1, "quantity": -1}]),
            json!([{"product_id": 1, "quantity": 1.5}]),
            json!([{"product_id": 1, "quantity": 1001}]),
            json!([{"product_id": "1", "quantity": 1}]),
            json!([{"product_id": 0, "quantity": 1}]),
            json!([{"product_id": 1, "quantity": 600}, {"product_id": 1, "quantity": 600}]),
        ] {
            assert!(parse_items(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let a = fingerprint(&[Line {
            product_id: 1,
            quantity: 2,
        }]);
        assert_eq!(
            a,
            fingerprint(&[Line {
                product_id: 1,
                quantity: 2
            }])
        );
        assert_ne!(
            a,
            fingerprint(&[Line {
                product_id: 1,
                quantity: 3
            }])
        );
    }
}
