//! Orders' domain types: the order, its state machine, and validated input.

use chrono::{DateTime, Utc};
use ecom_shared::{FieldError, idempotency::IdempotencyKey};
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

/// A line as the client sent it: `None` for a field that is missing or not a whole number.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineInput {
    pub product_id: Option<i64>,
    pub quantity: Option<i64>,
}

/// The lines of one checkout: 1..=50 of them, positive product ids, 1..=1000 units of each
/// product (lines of the same product merged), sorted by product id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(Vec<Line>);

impl OrderLines {
    /// Parses `items` (`None`: not a list), reporting every bad field.
    pub fn parse(items: Option<Vec<LineInput>>) -> Result<Self, Vec<FieldError>> {
        let Some(raw) = items else {
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
            let product_id = item.product_id.filter(|id| *id > 0);
            let quantity = item.quantity.filter(|q| (1..=MAX_QUANTITY).contains(q));
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
        Ok(Self(lines))
    }

    pub fn lines(&self) -> &[Line] {
        &self.0
    }

    pub fn product_ids(&self) -> Vec<i64> {
        self.0.iter().map(|l| l.product_id).collect()
    }

    /// A stable fingerprint of the lines (the idempotency key's request hash).
    pub fn fingerprint(&self) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let canonical: String = self
            .0
            .iter()
            .map(|l| format!("{}x{};", l.product_id, l.quantity))
            .collect();
        Sha256::digest(canonical.as_bytes()).to_vec()
    }
}

/// The checkout command: what `POST /orders` and gRPC `CreateOrder` ask for.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub lines: OrderLines,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl Checkout {
    /// The command from what a request carried; every bad field at once.
    pub fn new(
        items: Option<Vec<LineInput>>,
        idempotency_key: Result<Option<IdempotencyKey>, FieldError>,
    ) -> Result<Self, Vec<FieldError>> {
        match (OrderLines::parse(items), idempotency_key) {
            (Ok(lines), Ok(idempotency_key)) => Ok(Self {
                lines,
                idempotency_key,
            }),
            (Ok(_), Err(key)) => Err(vec![key]),
            (Err(errors), Ok(_)) => Err(errors),
            (Err(mut errors), Err(key)) => {
                errors.push(key);
                Err(errors)
            }
        }
    }
}

/// What Payments tells Orders (`MarkPaid`, `MarkRefunded`): this payment settled this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub order_id: i64,
    pub payment_id: i64,
}

#[cfg(test)]
mod tests {
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

    fn line(product_id: i64, quantity: i64) -> LineInput {
        LineInput {
            product_id: Some(product_id),
            quantity: Some(quantity),
        }
    }

    #[test]
    fn items_are_validated_merged_and_sorted() {
        assert_eq!(
            OrderLines::parse(Some(vec![line(5, 1), line(2, 2), line(5, 3)])),
            Ok(OrderLines(vec![
                Line {
                    product_id: 2,
                    quantity: 2
                },
                Line {
                    product_id: 5,
                    quantity: 4
                }
            ]))
        );
        let missing = LineInput::default();
        for bad in [
            None,
            Some(vec![]),
            Some(vec![line(1, 0)]),
            Some(vec![line(1, -1)]),
            Some(vec![line(1, 1001)]),
            Some(vec![missing]),
            Some(vec![line(0, 1)]),
            Some(vec![line(1, 600), line(1, 600)]),
            Some(vec![line(1, 1); 51]),
        ] {
            assert!(OrderLines::parse(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_checkout_reports_the_lines_and_the_key_together() {
        let bad_key = IdempotencyKey::parse("has space");
        let errors = Checkout::new(Some(vec![LineInput::default()]), bad_key.map(Some))
            .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[0].product_id",
                "items[0].quantity",
                "Idempotency-Key"
            ]
        );
        assert!(Checkout::new(Some(vec![line(1, 1)]), Ok(None)).is_ok());
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let print =
            |lines: Vec<LineInput>| OrderLines::parse(Some(lines)).expect("valid").fingerprint();
        let a = print(vec![line(1, 2)]);
        assert_eq!(a, print(vec![line(1, 1), line(1, 1)]), "merged lines");
        assert_ne!(a, print(vec![line(1, 3)]));
    }
}
