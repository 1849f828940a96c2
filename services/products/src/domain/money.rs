//! `Money`: an exact, non-negative amount with two decimal places that fits `numeric(12, 2)`.
//! Parsed from its decimal text; NaN, infinities, exponents, signs, a third decimal and overflow
//! are refused, never rounded.

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

impl Money {
    /// The largest amount `numeric(12, 2)` holds.
    pub const MAX_INTEGER_DIGITS: usize = 10;

    /// Why a text (or a JSON value) is not an amount at all.
    pub const NOT_AN_AMOUNT: &'static str = "must be a decimal amount like 19.99";

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let s = raw.trim();
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
            return Err(Self::NOT_AN_AMOUNT);
        }
        if frac.len() > 2 {
            return Err("must have at most two decimal places");
        }
        if int.trim_start_matches('0').len() > Self::MAX_INTEGER_DIGITS {
            return Err("is too large");
        }
        let mut d = Decimal::from_str(s).map_err(|_| Self::NOT_AN_AMOUNT)?;
        d.rescale(2);
        Ok(Self(d))
    }

    /// From a database value (already `numeric(12, 2)`).
    pub fn from_db(d: Decimal) -> Self {
        let mut d = d;
        d.rescale(2);
        Self(d)
    }

    pub fn amount(self) -> Decimal {
        self.0
    }
}

/// Zero.
impl Default for Money {
    fn default() -> Self {
        Self(Decimal::new(0, 2))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exact_amounts() {
        for (raw, shown) in [
            ("19.99", "19.99"),
            ("0", "0.00"),
            ("5.5", "5.50"),
            (" 7 ", "7.00"),
            ("9999999999.99", "9999999999.99"),
            ("007.10", "7.10"),
        ] {
            assert_eq!(
                Money::parse(raw).map(|m| m.to_string()).as_deref(),
                Ok(shown),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_everything_else() {
        for raw in [
            "",
            "-1",
            "+1",
            "1.234",
            "NaN",
            "inf",
            "Infinity",
            "1e3",
            "1E3",
            "1.",
            ".5",
            "1,5",
            "0x10",
            "10000000000",
            "1 000",
            "12.3.4",
        ] {
            assert!(Money::parse(raw).is_err(), "{raw:?} must be refused");
        }
    }

    #[test]
    fn serialises_as_a_two_place_string() {
        let m = Money::parse("5").expect("money");
        assert_eq!(serde_json::to_string(&m).expect("json"), "\"5.00\"");
    }
}
