//! Stripe-style `Idempotency-Key`s: the header and its syntax. Each service stores its keys in
//! its own table, scoped per user, under a unique constraint.

use axum::http::HeaderMap;

use crate::FieldError;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";

/// The raw header value, if sent. A value that is not visible ASCII comes back as one that
/// [`parse_key`] refuses, so it is a 422 and never silently ignored.
pub fn header(headers: &HeaderMap) -> Option<&str> {
    headers.get(HEADER).map(|v| v.to_str().unwrap_or("\u{0}"))
}

/// A key: 1..=255 visible ASCII characters (surrounding spaces trimmed).
pub fn parse_key(raw: &str) -> Result<String, FieldError> {
    let k = raw.trim();
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldError::new(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(k.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert_eq!(parse_key(" order-1 ").as_deref(), Ok("order-1"));
        assert!(parse_key("").is_err());
        assert!(parse_key("has space").is_err());
        assert!(parse_key("é").is_err());
        assert!(parse_key(&"k".repeat(256)).is_err());
        assert!(parse_key(&"k".repeat(255)).is_ok());
        let mut headers = HeaderMap::new();
        assert_eq!(header(&headers), None);
        headers.insert(HEADER, "abc".parse().expect("value"));
        assert_eq!(header(&headers), Some("abc"));
    }
}
