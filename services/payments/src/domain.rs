//! Payments' domain types: the payment, its states, and the pay command.

use chrono::{DateTime, Datelike, Utc};
use ecom_shared::FieldError;
use ecom_shared::{idempotency::IdempotencyKey, json::Lenient};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::card::{Card, CardInput};

/// A payment's state. `processing → succeeded | failed`, `succeeded → refunded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// The order is claimed and the card is being charged.
    Processing,
    Succeeded,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "processing" => Self::Processing,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }
}

/// What may be shown of a card: brand and last four digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CardSummary {
    #[schema(example = "visa")]
    pub brand: String,
    #[schema(example = "4242")]
    pub last4: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub user_id: i64,
    /// The order's total, taken from the Orders service.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "39.98")]
    pub amount: Decimal,
    pub currency: String,
    pub status: PaymentStatus,
    /// Why it failed (`card_declined`, `insufficient_funds`, `processing_error`, ...) or why it
    /// was refunded automatically (`order_cancelled`).
    pub failure_code: Option<String>,
    pub card: CardSummary,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A card as the client sent it: `None` for a field that is missing or of the wrong type.
#[derive(Debug, Default)]
pub struct CardFields {
    pub number: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub cvc: Option<String>,
}

/// The pay command: what `POST /payments` and gRPC `Pay` ask for.
#[derive(Debug)]
pub struct Pay {
    pub order_id: i64,
    pub card: Card,
    pub idempotency_key: Option<IdempotencyKey>,
}

impl Pay {
    /// The command from what a request carried: `order_id` (`None`: missing), `card` (`None`:
    /// missing or not an object). Shape errors (the key's among them) are `Validation`, all at
    /// once; then an unusable card is `Card`.
    pub fn new(
        order_id: Option<Lenient<i64>>,
        card: Option<CardFields>,
        idempotency_key: Result<Option<IdempotencyKey>, FieldError>,
        today: DateTime<Utc>,
    ) -> Result<Self, PayError> {
        let mut errors = Vec::new();
        let order_id = match order_id {
            None => {
                errors.push(FieldError::new("order_id", "is required"));
                None
            }
            Some(id) => {
                let id = id.valid().filter(|id| *id > 0);
                if id.is_none() {
                    errors.push(FieldError::new("order_id", "must be a positive integer"));
                }
                id
            }
        };
        let Some(card) = card else {
            errors.push(FieldError::new(
                "card",
                "is required: {number, exp_month, exp_year, cvc}",
            ));
            return Err(PayError::Validation(with_key(errors, idempotency_key)));
        };
        for (field, missing, what) in [
            ("card.number", card.number.is_none(), "a string of digits"),
            ("card.exp_month", card.exp_month.is_none(), "an integer"),
            ("card.exp_year", card.exp_year.is_none(), "an integer"),
            ("card.cvc", card.cvc.is_none(), "a string of digits"),
        ] {
            if missing {
                errors.push(FieldError::new(field, format!("is required, {what}")));
            }
        }
        let (Some(order_id), Some(number), Some(exp_month), Some(exp_year), Some(cvc), true) = (
            order_id,
            card.number,
            card.exp_month,
            card.exp_year,
            card.cvc,
            errors.is_empty(),
        ) else {
            return Err(PayError::Validation(with_key(errors, idempotency_key)));
        };
        let input = CardInput {
            number: &number,
            exp_month,
            exp_year,
            cvc: &cvc,
        };
        let card = Card::parse(&input, (today.year(), today.month())).map_err(|errors| {
            PayError::Card(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(e.field, e.message))
                    .collect(),
            )
        })?;
        let idempotency_key = idempotency_key.map_err(|e| PayError::Validation(vec![e]))?;
        Ok(Self {
            order_id,
            card,
            idempotency_key,
        })
    }

    /// What tells a replay from another request under the same idempotency key. Only what
    /// may be stored goes in (a hash of a card number is guessable, so the number stays out).
    pub fn fingerprint(&self) -> Vec<u8> {
        let canonical = format!(
            "{};{};{};{:02}/{}",
            self.order_id,
            self.card.brand().as_str(),
            self.card.last4(),
            self.card.exp_month(),
            self.card.exp_year()
        );
        Sha256::digest(canonical.as_bytes()).to_vec()
    }
}

fn with_key(
    mut errors: Vec<FieldError>,
    key: Result<Option<IdempotencyKey>, FieldError>,
) -> Vec<FieldError> {
    errors.extend(key.err());
    errors
}

/// Why a pay request was refused: its shape (`validation_error`), or a card no processor could
/// charge (`invalid_card`).
#[derive(Debug)]
pub enum PayError {
    Validation(Vec<FieldError>),
    Card(Vec<FieldError>),
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn today() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0)
            .single()
            .expect("date")
    }

    fn fields(e: &PayError) -> Vec<String> {
        match e {
            PayError::Validation(v) | PayError::Card(v) => {
                v.iter().map(|f| f.field.clone()).collect()
            }
        }
    }

    fn card(number: &str, exp_month: i64, exp_year: i64, cvc: &str) -> Option<CardFields> {
        Some(CardFields {
            number: Some(number.into()),
            exp_month: Some(exp_month),
            exp_year: Some(exp_year),
            cvc: Some(cvc.into()),
        })
    }

    fn pay(order_id: Option<Lenient<i64>>, card: Option<CardFields>) -> Result<Pay, PayError> {
        Pay::new(order_id, card, Ok(None), today())
    }

    #[test]
    fn shape_errors_are_validation_and_card_errors_are_card_errors() {
        let req = pay(
            Some(Lenient::Valid(5)),
            card("4242 4242 4242 4242", 12, 2030, "123"),
        )
        .expect("valid");
        assert_eq!((req.order_id, req.card.last4()), (5, "4242"));

        for (order_id, card) in [
            (None, None),
            (Some(Lenient::Valid(0)), Some(CardFields::default())),
            (Some(Lenient::Valid(-1)), None),
            (
                Some(Lenient::Invalid),
                card("4242424242424242", 12, 2030, "123"),
            ),
        ] {
            let e = pay(order_id, card).expect_err("shape");
            assert!(matches!(e, PayError::Validation(_)), "{e:?}");
        }
        let e = pay(None, Some(CardFields::default())).expect_err("all");
        assert_eq!(
            fields(&e),
            [
                "order_id",
                "card.number",
                "card.exp_month",
                "card.exp_year",
                "card.cvc"
            ]
        );

        let luhn = pay(
            Some(Lenient::Valid(5)),
            card("4242424242424241", 10, 2026, "12"),
        );
        let e = luhn.expect_err("card");
        assert!(matches!(e, PayError::Card(_)));
        assert_eq!(fields(&e), ["card.number", "card.exp_year", "card.cvc"]);
        assert!(
            !format!("{e:?}").contains("4242424241"),
            "no card number in errors"
        );
    }

    #[test]
    fn a_bad_key_joins_the_shape_errors_and_comes_after_the_card() {
        let bad_key = || IdempotencyKey::parse("has space").map(Some);
        let e = Pay::new(None, None, bad_key(), today()).expect_err("shape");
        assert_eq!(fields(&e), ["order_id", "card", "Idempotency-Key"]);
        let good = card("4242424242424242", 12, 2030, "123");
        let e = Pay::new(Some(Lenient::Valid(5)), good, bad_key(), today()).expect_err("key");
        assert!(
            matches!(&e, PayError::Validation(v) if v.len() == 1),
            "{e:?}"
        );
        let bad_card = card("4242424242424241", 12, 2030, "123");
        let e = Pay::new(Some(Lenient::Valid(5)), bad_card, bad_key(), today()).expect_err("card");
        assert!(
            matches!(e, PayError::Card(_)),
            "the card first, as before: {e:?}"
        );
    }

    #[test]
    fn the_fingerprint_ignores_the_cvc_but_not_the_order_or_card() {
        let print = |order: i64, number: &str, cvc: &str| {
            pay(Some(Lenient::Valid(order)), card(number, 1, 2030, cvc))
                .expect("valid")
                .fingerprint()
        };
        assert_eq!(
            print(1, "4242424242424242", "123"),
            print(1, "4242-4242-4242-4242", "999")
        );
        assert_ne!(
            print(1, "4242424242424242", "123"),
            print(2, "4242424242424242", "123")
        );
        assert_ne!(
            print(1, "4242424242424242", "123"),
            print(1, "4000000000000002", "123")
        );
    }
}
