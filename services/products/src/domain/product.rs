//! Products and the commands that write them. The rules for each field live here once; the
//! adapters (`http::body`, `grpc`) read their input, call these rules and build the commands.

use chrono::{DateTime, Utc};

use super::Money;

/// A product as stored, with its sellable stock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// Exact decimal string with two places.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "19.99")]
    pub price: rust_decimal::Decimal,
    pub currency: String,
    /// On hand minus active reservations.
    pub stock: i64,
    pub category: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The largest stock count accepted (keeps sums far from overflow).
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Why a stock count was refused (also for a number that is not whole).
pub const BAD_STOCK: &str = "must be a whole number between 0 and 1000000000";

/// Text as sent, trimmed. The length limit counts what was sent (surrounding whitespace
/// included), so it is a plain `maxLength` in the OpenAPI document; the minimum counts the
/// trimmed text.
fn text(s: &str, min: usize, max: usize) -> Result<String, String> {
    let t = s.trim();
    if s.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else if t.chars().count() < min {
        Err(if min == 1 {
            "must not be empty"
        } else {
            "is too short"
        }
        .to_owned())
    } else if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(t.to_owned())
    }
}

/// A product's name: 1..=200 characters.
pub fn name(s: &str) -> Result<String, String> {
    text(s, 1, 200)
}

/// A product's description: up to 10 000 characters.
pub fn description(s: &str) -> Result<String, String> {
    text(s, 0, 10_000)
}

/// A product's category: 1..=100 characters.
pub fn category(s: &str) -> Result<String, String> {
    text(s, 1, 100)
}

/// Units that can be bought: 0..=[`MAX_STOCK`].
pub fn stock(n: i64) -> Result<i64, &'static str> {
    if (0..=MAX_STOCK).contains(&n) {
        Ok(n)
    } else {
        Err(BAD_STOCK)
    }
}

/// Create a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
    pub category: Option<String>,
}

/// Change a product: absent fields stay as they are. `stock` sets what can be bought (units
/// held by active reservations stay held). `category: Some(None)` clears the category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub stock: Option<i64>,
    pub category: Option<Option<String>>,
}

/// Change one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductUpdate {
    pub id: i64,
    pub patch: ProductPatch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded_as_sent() {
        assert_eq!(name(" Mug "), Ok("Mug".to_owned()));
        assert_eq!(name("   "), Err("must not be empty".to_owned()));
        assert_eq!(
            name(&format!(" {}", "a".repeat(200))),
            Err("must be at most 200 characters".to_owned())
        );
        assert_eq!(description(""), Ok(String::new()));
        assert_eq!(
            category("a\u{7}b"),
            Err("must not contain control characters".to_owned())
        );
        assert_eq!(description("two\nlines\t"), Ok("two\nlines".to_owned()));
    }

    #[test]
    fn stock_is_bounded() {
        assert_eq!(stock(0), Ok(0));
        assert_eq!(stock(MAX_STOCK), Ok(MAX_STOCK));
        assert_eq!(stock(-1), Err(BAD_STOCK));
        assert_eq!(stock(MAX_STOCK + 1), Err(BAD_STOCK));
    }
}
