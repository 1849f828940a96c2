//! Listing requests: the query parameters of `GET /products` (and gRPC `ListProducts`),
//! checked once into a [`Listing`].

use ecom_shared::FieldError;

use super::Money;

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
