//! Reading JSON request bodies the way JSON (RFC 8259) and JSON Schema read them.

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
