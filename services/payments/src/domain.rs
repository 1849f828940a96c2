//! Payments' domain types: the payment, its states, and a validated pay request.

use chrono::{DateTime, Datelike, Utc};
use ecom_shared::FieldError;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

/// A validated `POST /payments` body.
#[derive(Debug)]
pub struct PayRequest {
    pub order_id: i64,
    pub card: Card,
}

impl PayRequest {
    /// Parses the body: shape errors are `validation`, an unusable card is `card`.
    pub fn parse(body: &Value, today: DateTime<Utc>) -> Result<Self, PayRequestError> {
        let mut errors = Vec::new();
        let order_id = match body.get("order_id") {
            // `7.0` is the integer 7 to JSON and to the document's `type: integer`.
            Some(v @ Value::Number(_)) => match ecom_shared::json::whole_number(v) {
                Some(id) if id > 0 => Some(id),
                _ => {
                    errors.push(FieldError::new("order_id", "must be a positive integer"));
                    None
                }
            },
            None | Some(Value::Null) => {
                errors.push(FieldError::new("order_id", "is required"));
                None
            }
            Some(_) => {
                errors.push(FieldError::new("order_id", "must be a positive integer"));
                None
            }
        };
        let card = body.get("card").filter(|c| c.is_object());
        if card.is_none() {
            errors.push(FieldError::new(
                "card",
                "is required: {number, exp_month, exp_year, cvc}",
            ));
        }
        let text = |field: &str| card.and_then(|c| c.get(field)).and_then(Value::as_str);
        let int = |field: &str| {
            card.and_then(|c| c.get(field))
                .and_then(ecom_shared::json::whole_number)
        };
        let (number, exp_month, exp_year, cvc) = (
            text("number"),
            int("exp_month"),
            int("exp_year"),
            text("cvc"),
        );
        if card.is_some() {
            for (field, ok, what) in [
                ("card.number", number.is_some(), "a string of digits"),
                ("card.exp_month", exp_month.is_some(), "an integer"),
                ("card.exp_year", exp_year.is_some(), "an integer"),
                ("card.cvc", cvc.is_some(), "a string of digits"),
            ] {
                if !ok {
                    errors.push(FieldError::new(field, format!("is required, {what}")));
                }
            }
        }
        if !errors.is_empty() {
            return Err(PayRequestError::Validation(errors));
        }
        let (Some(order_id), Some(number), Some(exp_month), Some(exp_year), Some(cvc)) =
            (order_id, number, exp_month, exp_year, cvc)
        else {
            return Err(PayRequestError::Validation(vec![FieldError::new(
                "card",
                "is incomplete",
            )]));
        };
        let input = CardInput {
            number,
            exp_month,
            exp_year,
            cvc,
        };
        let card = Card::parse(&input, (today.year(), today.month())).map_err(|errors| {
            PayRequestError::Card(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(e.field, e.message))
                    .collect(),
            )
        })?;
        Ok(Self { order_id, card })
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

#[derive(Debug)]
pub enum PayRequestError {
    Validation(Vec<FieldError>),
    Card(Vec<FieldError>),
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn today() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0)
            .single()
            .expect("date")
    }

    fn fields(e: &PayRequestError) -> Vec<String> {
        match e {
            PayRequestError::Validation(v) | PayRequestError::Card(v) => {
                v.iter().map(|f| f.field.clone()).collect()
            }
        }
    }

    #[test]
    fn shape_errors_are_validation_and_card_errors_are_card_errors() {
        let ok = json!({"order_id": 5, "card": {"number": "4242 4242 4242 4242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}});
        let req = PayRequest::parse(&ok, today()).expect("valid");
        assert_eq!((req.order_id, req.card.last4()), (5, "4242"));

        for bad in [
            json!({}),
            json!({"order_id": 0, "card": {}}),
            json!({"order_id": -1, "card": null}),
            json!({"order_id": 1.5, "card": "4242"}),
            json!({"order_id": "1", "card": {"number": 4242424242424242_i64, "exp_month": "12", "exp_year": 2030, "cvc": 123}}),
        ] {
            let e = PayRequest::parse(&bad, today()).expect_err("shape");
            assert!(matches!(e, PayRequestError::Validation(_)), "{bad}: {e:?}");
        }
        let e = PayRequest::parse(&json!({"card": {}}), today()).expect_err("all");
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

        let luhn = json!({"order_id": 5, "card": {"number": "4242424242424241", "exp_month": 10, "exp_year": 2026, "cvc": "12"}});
        let e = PayRequest::parse(&luhn, today()).expect_err("card");
        assert!(matches!(e, PayRequestError::Card(_)));
        assert_eq!(fields(&e), ["card.number", "card.exp_year", "card.cvc"]);
        assert!(
            !format!("{e:?}").contains("4242424241"),
            "no card number in errors"
        );
    }

    #[test]
    fn the_fingerprint_ignores_the_cvc_but_not_the_order_or_card() {
        let parse = |order: i64, number: &str, cvc: &str| {
            PayRequest::parse(
                &json!({"order_id": order, "card": {"number": number, "exp_month": 1, "exp_year": 2030, "cvc": cvc}}),
                today(),
            )
            .expect("valid")
            .fingerprint()
        };
        assert_eq!(
            parse(1, "4242424242424242", "123"),
            parse(1, "4242-4242-4242-4242", "999")
        );
        assert_ne!(
            parse(1, "4242424242424242", "123"),
            parse(2, "4242424242424242", "123")
        );
        assert_ne!(
            parse(1, "4242424242424242", "123"),
            parse(1, "4000000000000002", "123")
        );
    }
}
