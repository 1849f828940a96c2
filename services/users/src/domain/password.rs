//! A plaintext password on its way to the hasher. Its `Debug` never shows it, so it cannot
//! leak into a log by accident.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// Bounds the hashing work a single request can ask for.
    pub const MAX_BYTES: usize = 1024;

    /// A new password (registration, change): at least 8 characters.
    pub fn parse_new(raw: &str) -> Result<Self, &'static str> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err("must be at least 8 characters");
        }
        Self::parse_any(raw)
    }

    /// A password presented at login: any length up to the bound (old rules may have differed).
    pub fn parse_any(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("is required");
        }
        if raw.len() > Self::MAX_BYTES {
            return Err("is too long");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::Password;

    #[test]
    fn rules_and_redaction() {
        assert!(Password::parse_new("short").is_err());
        assert!(Password::parse_new("long enough").is_ok());
        assert!(Password::parse_any("x").is_ok());
        assert!(Password::parse_any("").is_err());
        assert!(Password::parse_new(&"x".repeat(1025)).is_err());
        let p = Password::parse_new("hunter2hunter2").map(|p| format!("{p:?}"));
        assert_eq!(p.as_deref(), Ok("Password(***)"));
    }
}
