//! Reading JSON request bodies the way JSON (RFC 8259) and JSON Schema read them.

use serde::{Deserialize, Deserializer, de::IgnoredAny};
use serde_json::Value;

/// The largest integer a JSON number written with a fraction or an exponent (`5.0`, `1e3`) can
/// carry exactly: 2^53. Beyond it such a number may not be the one the client wrote.
pub const MAX_EXACT_FLOAT_INTEGER: i64 = 1 << 53;

/// A whole number: `5`, and also `5.0` or `5e0`, which JSON and JSON Schema (`type: integer`)
/// count as the same integer. `None` for fractions, other types, and written-with-a-fraction
/// numbers beyond ±2^53 (not exact).
pub fn whole_number(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let whole = (f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INTEGER as f64).then_some(f as i64);
    whole
}

/// A body field read as a `T` when it is one, and kept as "sent, but not a `T`" otherwise, so
/// that the service reports it in its own words next to every other bad field (serde's derive
/// would stop at the first). As `Option<Lenient<T>>`, `None` is a field that is missing or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lenient<T> {
    Valid(T),
    Invalid,
}

impl<T> Lenient<T> {
    /// The value, when it was a `T`.
    pub fn valid(self) -> Option<T> {
        match self {
            Self::Valid(v) => Some(v),
            Self::Invalid => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Lenient<U> {
        match self {
            Self::Valid(v) => Lenient::Valid(f(v)),
            Self::Invalid => Lenient::Invalid,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Buffers the value, tries `T`, and otherwise accepts anything.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Valid(T),
            Invalid(IgnoredAny),
        }
        Ok(match Either::deserialize(deserializer)? {
            Either::Valid(v) => Self::Valid(v),
            Either::Invalid(_) => Self::Invalid,
        })
    }
}

/// An integer as JSON Schema's `type: integer` reads one (see [`whole_number`]): `5`, `5.0`,
/// `5e0`; not `5.5`, not `"5"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(n))
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<WholeNumber, E> {
                i64::try_from(n)
                    .map(WholeNumber)
                    .map_err(|_| E::custom("out of range"))
            }

            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<WholeNumber, E> {
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                let whole = (f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INTEGER as f64)
                    .then_some(WholeNumber(f as i64));
                whole.ok_or_else(|| E::custom("not a whole number"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lenient_fields_keep_what_was_not_the_type() {
        #[derive(Debug, Deserialize)]
        struct Body {
            #[serde(default)]
            n: Option<Lenient<WholeNumber>>,
            #[serde(default)]
            s: Option<Lenient<String>>,
        }
        let read = |v: Value| {
            let b: Body = serde_json::from_value(v).expect("any object is a Body");
            (b.n, b.s)
        };
        assert_eq!(read(json!({})), (None, None));
        assert_eq!(read(json!({"n": null, "s": null})), (None, None));
        assert_eq!(
            read(json!({"n": 2.0, "s": "x"})),
            (
                Some(Lenient::Valid(WholeNumber(2))),
                Some(Lenient::Valid("x".to_owned()))
            )
        );
        assert_eq!(
            read(json!({"n": "2", "s": 5})),
            (Some(Lenient::Invalid), Some(Lenient::Invalid))
        );
        assert_eq!(read(json!({"n": [1], "s": {}})).0, Some(Lenient::Invalid));
    }

    /// Through `Lenient` (which buffers the value) as on its own, a whole number is what
    /// [`whole_number`] says it is.
    #[test]
    fn whole_numbers_read_as_whole_number_does() {
        for v in [
            json!(5),
            json!(-3),
            json!(1350.0),
            json!(1e3),
            json!(i64::MAX),
            json!(1.5),
            json!(1e300),
            json!(18_014_398_509_481_984.0),
            json!(u64::MAX),
            json!("5"),
            json!(true),
        ] {
            let direct = WholeNumber::deserialize(&v).ok().map(|w| w.0);
            let lenient: Lenient<WholeNumber> = serde_json::from_value(v.clone()).expect("any");
            assert_eq!(direct, whole_number(&v), "{v}");
            assert_eq!(lenient.valid().map(|w| w.0), whole_number(&v), "{v}");
        }
    }

    #[test]
    fn integers_however_written() {
        for (v, n) in [
            (json!(5), Some(5)),
            (json!(-3), Some(-3)),
            (json!(1350.0), Some(1350)),
            (json!(1e3), Some(1000)),
            (json!(-0.0), Some(0)),
            (json!(i64::MAX), Some(i64::MAX)),
            (
                json!(9_007_199_254_740_992.0),
                Some(MAX_EXACT_FLOAT_INTEGER),
            ),
        ] {
            assert_eq!(whole_number(&v), n, "{v}");
        }
        for v in [
            json!(1.5),
            json!(1e300),
            json!(18_014_398_509_481_984.0),
            json!(u64::MAX),
            json!("5"),
            json!(null),
            json!(true),
        ] {
            assert_eq!(whole_number(&v), None, "{v}");
        }
    }
}
