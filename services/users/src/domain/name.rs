//! A person's display name: trimmed, 1..=200 characters, no control characters.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        if s.is_empty() {
            return Err("is required");
        }
        if s.chars().count() > 200 {
            return Err("must be at most 200 characters");
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::FullName;

    #[test]
    fn bounds() {
        assert_eq!(
            FullName::parse("  Ada Lovelace ").map(|n| n.as_str().to_owned()),
            Ok("Ada Lovelace".into())
        );
        assert!(FullName::parse("   ").is_err());
        assert!(FullName::parse(&"é".repeat(200)).is_ok());
        assert!(FullName::parse(&"é".repeat(201)).is_err());
        assert!(FullName::parse("a\u{0}b").is_err());
    }
}
