//! Listing pages: `limit`/`offset` as every list endpoint takes them.

use crate::FieldError;

/// `limit`/`offset` of a listing, validated: limit 1..=100, offset >= 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub const MAX_LIMIT: i64 = 100;

    pub fn parse(limit: Option<i64>, offset: Option<i64>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let limit = limit.unwrap_or(20);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            errors.push(FieldError::new("limit", "must be between 1 and 100"));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            errors.push(FieldError::new("offset", "must be 0 or more"));
        }
        if errors.is_empty() {
            Ok(Self { limit, offset })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn page_bounds() {
        assert_eq!(
            Page::parse(None, None),
            Ok(Page {
                limit: 20,
                offset: 0
            })
        );
        assert!(Page::parse(Some(0), None).is_err());
        assert!(Page::parse(Some(101), None).is_err());
        assert!(Page::parse(Some(100), Some(-1)).is_err());
        assert_eq!(
            Page::parse(Some(100), Some(5)),
            Ok(Page {
                limit: 100,
                offset: 5
            })
        );
    }
}
