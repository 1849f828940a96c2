//! Listing requests: the query parameters of `GET /products` (and gRPC `ListProducts`),
//! checked once into a [`Listing`].

use std::ops::RangeInclusive;

use ecom_shared::FieldError;

use super::{FieldErrors, Money};

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
    /// Every bad parameter at once. Blank parameters are not given (the contract's own example
    /// sends `search=&category=`).
    pub fn parse(p: &ListingParams) -> Result<Self, Vec<FieldError>> {
        let mut errors = FieldErrors::default();
        // A refused parameter leaves a placeholder default that `finish` never lets out.
        let listing = Self {
            limit: errors
                .check("limit", number(given(&p.limit), 20, 1..=100))
                .unwrap_or_default(),
            offset: errors
                .check("offset", number(given(&p.offset), 0, 0..=1_000_000))
                .unwrap_or_default(),
            min_price: errors
                .check(
                    "min_price",
                    given(&p.min_price).map(Money::parse).transpose(),
                )
                .flatten(),
            max_price: errors
                .check(
                    "max_price",
                    given(&p.max_price).map(Money::parse).transpose(),
                )
                .flatten(),
            sort: errors
                .check("sort", given(&p.sort).map_or(Ok(Sort::Id), sort))
                .unwrap_or_default(),
            search: errors
                .check("search", filter(given(&p.search), 200))
                .flatten(),
            category: errors
                .check("category", filter(given(&p.category), 100))
                .flatten(),
        };
        errors.finish(listing)
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

/// A parameter's trimmed text; `None` when absent or blank.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// An integer in `range`, `default` when not given.
fn number(v: Option<&str>, default: i64, range: RangeInclusive<i64>) -> Result<i64, String> {
    v.map_or(Ok(default), |s| {
        s.parse()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| format!("must be between {} and {}", range.start(), range.end()))
    })
}

fn sort(s: &str) -> Result<Sort, &'static str> {
    Sort::parse(s).ok_or("must be one of id, price, -price, name, -created_at")
}

/// A search or category filter: at most `max` characters and no control character (a NUL
/// byte reached PostgreSQL as an error, a 500).
fn filter(v: Option<&str>, max: usize) -> Result<Option<String>, String> {
    match v {
        Some(s) if s.chars().count() > max => Err(format!("must be at most {max} characters")),
        Some(s) if s.chars().any(char::is_control) => {
            Err("must not contain control characters".to_owned())
        }
        v => Ok(v.map(str::to_owned)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
