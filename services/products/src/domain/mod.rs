//! Products' domain types: parsed once at the edge (HTTP or gRPC), trusted after.

mod money;

use chrono::{DateTime, Utc};
use ecom_shared::FieldError;
pub use money::{Money, money_from_json};
use serde_json::Value;

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
/// The largest quantity of one line of a reservation.
pub const MAX_QUANTITY: i64 = 1_000_000;

fn text(
    errors: &mut Vec<FieldError>,
    field: &str,
    v: &Value,
    min: usize,
    max: usize,
) -> Option<String> {
    match v {
        Value::String(s) => {
            // The length limit counts what was sent (surrounding whitespace included), so it is
            // a plain `maxLength` in the OpenAPI document; the minimum counts the trimmed text.
            let t = s.trim();
            if s.chars().count() > max {
                errors.push(FieldError::new(
                    field,
                    format!("must be at most {max} characters"),
                ));
                None
            } else if t.chars().count() < min {
                errors.push(FieldError::new(
                    field,
                    if min == 1 {
                        "must not be empty"
                    } else {
                        "is too short"
                    },
                ));
                None
            } else if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                errors.push(FieldError::new(
                    field,
                    "must not contain control characters",
                ));
                None
            } else {
                Some(t.to_owned())
            }
        }
        _ => {
            errors.push(FieldError::new(field, "must be a string"));
            None
        }
    }
}

fn stock(errors: &mut Vec<FieldError>, v: &Value) -> Option<i64> {
    // `5.0` is the integer 5 to JSON and to the document's `type: integer`.
    match ecom_shared::json::whole_number(v) {
        Some(n) if (0..=MAX_STOCK).contains(&n) => Some(n),
        _ => {
            errors.push(FieldError::new(
                "stock",
                "must be a whole number between 0 and 1000000000",
            ));
            None
        }
    }
}

fn category(errors: &mut Vec<FieldError>, v: &Value) -> Option<Option<String>> {
    if v.is_null() {
        return Some(None);
    }
    text(errors, "category", v, 1, 100).map(Some)
}

/// A product to create, parsed from a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
    pub category: Option<String>,
}

impl NewProduct {
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let get = |k: &str| obj.get(k).unwrap_or(&Value::Null);
        let mut required = |k: &str| {
            let v = get(k);
            if v.is_null() {
                errors.push(FieldError::new(k, "is required"));
            }
            !v.is_null()
        };
        let (has_name, has_price, has_stock) =
            (required("name"), required("price"), required("stock"));
        let name = has_name
            .then(|| text(&mut errors, "name", get("name"), 1, 200))
            .flatten();
        let description = match get("description") {
            Value::Null => Some(String::new()),
            v => text(&mut errors, "description", v, 0, 10_000),
        };
        let price = has_price
            .then(|| {
                money_from_json(get("price"))
                    .map_err(|m| errors.push(FieldError::new("price", m)))
                    .ok()
            })
            .flatten();
        let stock = has_stock
            .then(|| stock(&mut errors, get("stock")))
            .flatten();
        let category = category(&mut errors, get("category"));
        match (name, description, price, stock, category) {
            (Some(name), Some(description), Some(price), Some(stock), Some(category))
                if errors.is_empty() =>
            {
                Ok(Self {
                    name,
                    description,
                    price,
                    stock,
                    category,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A partial update; absent fields stay as they are. `stock` sets what can be bought (units
/// held by active reservations stay held). `category: null` clears the category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Money>,
    pub stock: Option<i64>,
    pub category: Option<Option<String>>,
}

impl ProductPatch {
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new("body", "must be a JSON object")]);
        };
        let mut patch = Self::default();
        if let Some(v) = obj.get("name") {
            patch.name = text(&mut errors, "name", v, 1, 200);
        }
        if let Some(v) = obj.get("description") {
            patch.description = text(&mut errors, "description", v, 0, 10_000);
        }
        if let Some(v) = obj.get("price") {
            patch.price = money_from_json(v)
                .map_err(|m| errors.push(FieldError::new("price", m)))
                .ok();
        }
        if let Some(v) = obj.get("stock") {
            patch.stock = stock(&mut errors, v);
        }
        if let Some(v) = obj.get("category") {
            patch.category = category(&mut errors, v);
        }
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(errors)
        }
    }
}

/// Listing order; every variant is backed by an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sort {
    #[default]
    Id,
    Price,
    PriceDesc,
    Name,
    Newest,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => Self::Id,
            "price" => Self::Price,
            "-price" => Self::PriceDesc,
            "name" => Self::Name,
            "-created_at" => Self::Newest,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Price => "price",
            Self::PriceDesc => "-price",
            Self::Name => "name",
            Self::Newest => "-created_at",
        }
    }
}

/// A validated listing request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Listing {
    pub limit: i64,
    pub offset: i64,
    pub category: Option<String>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
    pub search: Option<String>,
    pub sort: Sort,
}

/// Raw listing parameters, as strings, so every bad one is reported with a field name.
/// Documented in [`crate::openapi`] (every accepted spelling).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListingParams {
    /// 1..=100, default 20.
    pub limit: Option<String>,
    /// Default 0.
    pub offset: Option<String>,
    pub category: Option<String>,
    pub min_price: Option<String>,
    pub max_price: Option<String>,
    /// Full-text search (web syntax: `"exact phrase"`, `-exclude`, `or`); short words match by prefix.
    pub search: Option<String>,
    /// `id` (default), `price`, `-price`, `name`, `-created_at`.
    pub sort: Option<String>,
}

impl Listing {
    pub fn parse(p: &ListingParams) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let blank = |o: &Option<String>| {
            o.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let int = |errors: &mut Vec<FieldError>,
                   field: &str,
                   v: Option<String>,
                   default: i64,
                   range: std::ops::RangeInclusive<i64>,
                   msg: &str| {
            match v {
                None => default,
                Some(s) => match s.parse::<i64>() {
                    Ok(n) if range.contains(&n) => n,
                    _ => {
                        errors.push(FieldError::new(field, msg));
                        default
                    }
                },
            }
        };
        let limit = int(
            &mut errors,
            "limit",
            blank(&p.limit),
            20,
            1..=100,
            "must be between 1 and 100",
        );
        let offset = int(
            &mut errors,
            "offset",
            blank(&p.offset),
            0,
            0..=1_000_000,
            "must be between 0 and 1000000",
        );
        let mut price = |field: &str, v: Option<String>| {
            v.and_then(|s| {
                Money::parse(&s)
                    .map_err(|m| errors.push(FieldError::new(field, m)))
                    .ok()
            })
        };
        let min_price = price("min_price", blank(&p.min_price));
        let max_price = price("max_price", blank(&p.max_price));
        let sort = match blank(&p.sort) {
            None => Sort::Id,
            Some(s) => Sort::parse(&s).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "sort",
                    "must be one of id, price, -price, name, -created_at",
                ));
                Sort::Id
            }),
        };
        // A NUL byte reaches PostgreSQL as an error (a 500); no control character belongs here.
        let mut filter = |field: &str, max: usize| {
            let value = blank(if field == "search" {
                &p.search
            } else {
                &p.category
            });
            if value.as_ref().is_some_and(|s| s.chars().count() > max) {
                errors.push(FieldError::new(
                    field,
                    format!("must be at most {max} characters"),
                ));
            } else if value
                .as_ref()
                .is_some_and(|s| s.chars().any(char::is_control))
            {
                errors.push(FieldError::new(
                    field,
                    "must not contain control characters",
                ));
            }
            value
        };
        let search = filter("search", 200);
        let category = filter("category", 100);
        if errors.is_empty() {
            Ok(Self {
                limit,
                offset,
                category,
                min_price,
                max_price,
                search,
                sort,
            })
        } else {
            Err(errors)
        }
    }

    /// A prefix query for the search words (`lap` finds `laptop`), as a `to_tsquery` string.
    pub fn prefix_query(&self) -> Option<String> {
        let words: Vec<String> = self
            .search
            .as_deref()?
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("or"))
            .take(8)
            .map(|w| format!("{}:*", w.to_lowercase()))
            .collect();
        (!words.is_empty()).then(|| words.join(" & "))
    }
}

/// One line of a reservation: a product and a positive quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Line {
    pub product_id: i64,
    pub quantity: i64,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn new_product_reports_every_bad_field() {
        let errs = NewProduct::parse(&json!({"name": " ", "price": "1.234", "stock": -1}))
            .expect_err("bad");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["name", "price", "stock"]);
        let errs = NewProduct::parse(&json!({})).expect_err("empty");
        assert_eq!(errs.len(), 3);
        assert!(NewProduct::parse(&json!({"name": "x", "price": 1, "stock": 1.5})).is_err());
        let ok =
            NewProduct::parse(&json!({"name": " Mug ", "price": "4.5", "stock": 3})).expect("ok");
        assert_eq!(
            (ok.name.as_str(), ok.price.to_string().as_str(), ok.category),
            ("Mug", "4.50", None)
        );
    }

    #[test]
    fn listing_bounds_and_sorts() {
        let p = |k: &str, v: &str| {
            let mut params = ListingParams::default();
            match k {
                "limit" => params.limit = Some(v.into()),
                "sort" => params.sort = Some(v.into()),
                "min_price" => params.min_price = Some(v.into()),
                _ => params.search = Some(v.into()),
            }
            Listing::parse(&params)
        };
        assert!(p("limit", "0").is_err());
        assert!(p("limit", "101").is_err());
        assert!(p("limit", "abc").is_err());
        assert_eq!(p("limit", "100").map(|l| l.limit), Ok(100));
        assert_eq!(p("sort", "-price").map(|l| l.sort), Ok(Sort::PriceDesc));
        assert!(p("sort", "price desc").is_err());
        assert!(p("min_price", "NaN").is_err());
        assert!(p("search", "lamp\u{0}").is_err(), "NUL");
        assert!(p("search", "a\u{7}b").is_err(), "BEL");
        assert_eq!(
            p("search", "Lap top!")
                .ok()
                .and_then(|l| l.prefix_query())
                .as_deref(),
            Some("lap:* & top:*")
        );
    }

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
}
