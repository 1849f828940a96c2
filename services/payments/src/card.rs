//! Emulated card processor for the Payments service.
//!
//! Validates raw card input ([`Card::parse`]) and decides the outcome of a
//! charge ([`charge`]) using Stripe's well-known test card numbers. The module
//! is pure: no I/O, and the current date is passed in by the caller.
//!
//! The full card number and the CVC are never exposed through `Debug` or
//! error messages; only the brand and the last four digits are shown.

use std::fmt;

/// Minimum number of digits in a card number.
const MIN_DIGITS: usize = 12;
/// Maximum number of digits in a card number.
const MAX_DIGITS: usize = 19;
/// How far in the future (in months) an expiry date may lie.
const MAX_MONTHS_AHEAD: i64 = 50 * 12;

/// Raw, unvalidated card details as received from a client.
#[derive(Clone, Copy)]
pub struct CardInput<'a> {
    /// Card number; spaces and dashes are accepted as separators.
    pub number: &'a str,
    /// Expiry month, 1 to 12.
    pub exp_month: i64,
    /// Expiry year, either 4 digits (2000 to 2100) or 2 digits (meaning 20yy).
    pub exp_year: i64,
    /// Card verification code.
    pub cvc: &'a str,
}

impl fmt::Debug for CardInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only reveal the last four digits when the number is long enough that
        // doing so cannot disclose the whole (or most of the) number.
        let digits = strip_separators(self.number);
        let is_digits = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let (brand, last4) = if is_digits && digits.len() >= MIN_DIGITS {
            (detect_brand(&digits), last_four(&digits))
        } else {
            (Brand::Unknown, "****")
        };
        f.debug_struct("CardInput")
            .field("brand", &brand)
            .field("last4", &last4)
            .field(
                "exp",
                &format_args!("{:02}/{}", self.exp_month, self.exp_year),
            )
            .finish_non_exhaustive()
    }
}

/// Card network, detected from the number's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brand {
    /// Visa (prefix 4).
    Visa,
    /// Mastercard (prefixes 51-55 and 2221-2720).
    Mastercard,
    /// American Express (prefixes 34 and 37).
    Amex,
    /// Discover (prefixes 6011, 644-649 and 65).
    Discover,
    /// Any other prefix.
    Unknown,
}

impl Brand {
    /// Lower-case wire name of the brand, e.g. `"visa"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Visa => "visa",
            Self::Mastercard => "mastercard",
            Self::Amex => "amex",
            Self::Discover => "discover",
            Self::Unknown => "unknown",
        }
    }

    /// Number of CVC digits required for this brand.
    fn cvc_len(self) -> usize {
        if self == Self::Amex { 4 } else { 3 }
    }
}

/// A validation error attached to one input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path: `card.number`, `card.exp_month`, `card.exp_year` or `card.cvc`.
    pub field: &'static str,
    /// Human-readable description; never contains the card number or CVC.
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A validated card. Holds the normalised number but never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    number: String,
    brand: Brand,
    exp_month: u8,
    exp_year: u16,
}

#[allow(
    clippy::missing_fields_in_debug,
    reason = "the card number is deliberately redacted; only last4 is shown"
)]
impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("brand", &self.brand)
            .field("last4", &self.last4())
            .field(
                "exp",
                &format_args!("{:02}/{}", self.exp_month, self.exp_year),
            )
            .finish()
    }
}

impl Card {
    /// Validates `input` against `today`, given as `(year, month)`.
    ///
    /// # Errors
    ///
    /// Returns every field error found (number, expiry month, expiry year,
    /// CVC), not just the first one.
    pub fn parse(input: &CardInput<'_>, today: (i32, u32)) -> Result<Card, Vec<FieldError>> {
        let mut errors = Vec::new();

        let number = match validate_number(input.number) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        };

        let month = match u8::try_from(input.exp_month) {
            Ok(m) if (1..=12).contains(&m) => Some(m),
            _ => {
                errors.push(FieldError::new(
                    "card.exp_month",
                    "must be between 1 and 12",
                ));
                None
            }
        };

        let year = match validate_year(input.exp_year, month, today) {
            Ok(y) => Some(y),
            Err(e) => {
                errors.push(e);
                None
            }
        };

        // The CVC length depends on the brand; fall back to a best-effort
        // brand guess when the number itself was rejected.
        let brand = number.as_deref().map_or_else(
            || {
                let digits = strip_separators(input.number);
                if digits.bytes().all(|b| b.is_ascii_digit()) {
                    detect_brand(&digits)
                } else {
                    Brand::Unknown
                }
            },
            detect_brand,
        );
        if let Err(e) = validate_cvc(input.cvc, brand, number.is_some()) {
            errors.push(e);
        }

        match (number, month, year) {
            (Some(number), Some(exp_month), Some(exp_year)) if errors.is_empty() => Ok(Card {
                number,
                brand,
                exp_month,
                exp_year,
            }),
            _ => Err(errors),
        }
    }

    /// Card network of this card.
    #[must_use]
    pub fn brand(&self) -> Brand {
        self.brand
    }

    /// Last four digits of the card number.
    #[must_use]
    pub fn last4(&self) -> &str {
        last_four(&self.number)
    }

    /// Expiry month, 1 to 12.
    #[must_use]
    pub fn exp_month(&self) -> u8 {
        self.exp_month
    }

    /// Expiry year as a 4-digit year.
    #[must_use]
    pub fn exp_year(&self) -> u16 {
        self.exp_year
    }
}

/// Reason a charge was declined by the emulated processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// Generic decline.
    CardDeclined,
    /// Not enough funds on the account.
    InsufficientFunds,
    /// Card reported lost.
    LostCard,
    /// Card reported stolen.
    StolenCard,
    /// Card has expired according to the issuer.
    ExpiredCard,
    /// CVC check failed at the issuer.
    IncorrectCvc,
    /// Transient processor failure; the charge may be retried.
    ProcessingError,
}

impl Decline {
    /// Stripe-style decline code, e.g. `"card_declined"`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::LostCard => "lost_card",
            Self::StolenCard => "stolen_card",
            Self::ExpiredCard => "expired_card",
            Self::IncorrectCvc => "incorrect_cvc",
            Self::ProcessingError => "processing_error",
        }
    }

    /// Whether retrying the same charge may succeed (only for processing errors).
    #[must_use]
    pub fn retryable(self) -> bool {
        matches!(self, Self::ProcessingError)
    }
}

/// Result of a charge attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The charge went through.
    Succeeded,
    /// The charge was declined for the given reason.
    Failed(Decline),
}

/// The emulated processor's decision for a validated card (Stripe test-card semantics).
///
/// Known Stripe test numbers produce their documented decline; every other
/// valid number succeeds.
#[must_use]
pub fn charge(card: &Card) -> Outcome {
    let decline = match card.number.as_str() {
        "4000000000000002" => Decline::CardDeclined,
        "4000000000009995" => Decline::InsufficientFunds,
        "4000000000009987" => Decline::LostCard,
        "4000000000009979" => Decline::StolenCard,
        "4000000000000069" => Decline::ExpiredCard,
        "4000000000000127" => Decline::IncorrectCvc,
        "4000000000000119" => Decline::ProcessingError,
        _ => return Outcome::Succeeded,
    };
    Outcome::Failed(decline)
}

/// Removes space and dash separators.
fn strip_separators(raw: &str) -> String {
    raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect()
}

/// Last four characters of an ASCII digit string (whole string if shorter).
fn last_four(digits: &str) -> &str {
    digits.get(digits.len().saturating_sub(4)..).unwrap_or("")
}

/// Normalises and validates a card number, returning its digits.
fn validate_number(raw: &str) -> Result<String, FieldError> {
    const FIELD: &str = "card.number";
    let digits = strip_separators(raw);
    if digits.is_empty() {
        return Err(FieldError::new(FIELD, "is required"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(
            FIELD,
            "must contain only digits, spaces or dashes",
        ));
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
        return Err(FieldError::new(
            FIELD,
            format!("must be between {MIN_DIGITS} and {MAX_DIGITS} digits"),
        ));
    }
    if !luhn_valid(&digits) {
        return Err(FieldError::new(FIELD, "is not a valid card number"));
    }
    Ok(digits)
}

/// Luhn checksum over an ASCII digit string.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Numeric value of the first `n` digits, if the string is that long.
fn prefix(digits: &str, n: usize) -> Option<u32> {
    digits.get(..n)?.parse().ok()
}

/// Detects the card network from the leading digits.
fn detect_brand(digits: &str) -> Brand {
    let p1 = prefix(digits, 1);
    let p2 = prefix(digits, 2);
    let p3 = prefix(digits, 3);
    let p4 = prefix(digits, 4);
    if p1 == Some(4) {
        Brand::Visa
    } else if p2.is_some_and(|p| (51..=55).contains(&p))
        || p4.is_some_and(|p| (2221..=2720).contains(&p))
    {
        Brand::Mastercard
    } else if matches!(p2, Some(34 | 37)) {
        Brand::Amex
    } else if p4 == Some(6011) || p2 == Some(65) || p3.is_some_and(|p| (644..=649).contains(&p)) {
        Brand::Discover
    } else {
        Brand::Unknown
    }
}

/// Validates the expiry year (and, with a valid month, the expiry date).
fn validate_year(raw: i64, month: Option<u8>, today: (i32, u32)) -> Result<u16, FieldError> {
    const FIELD: &str = "card.exp_year";
    let year = match raw {
        0..=99 => raw + 2000,
        2000..=2100 => raw,
        _ => {
            return Err(FieldError::new(
                FIELD,
                "must be a 2-digit year or a 4-digit year between 2000 and 2100",
            ));
        }
    };
    let year16 =
        u16::try_from(year).map_err(|_| FieldError::new(FIELD, "must be between 2000 and 2100"))?;

    let today_index = i64::from(today.0) * 12 + i64::from(today.1) - 1;
    let expired = match month {
        Some(m) => year * 12 + i64::from(m) - 1 < today_index,
        // Without a valid month, only a past year is certainly expired.
        None => year < i64::from(today.0),
    };
    if expired {
        return Err(FieldError::new(FIELD, "the card has expired"));
    }
    let exp_index = year * 12 + i64::from(month.unwrap_or(1)) - 1;
    if exp_index - today_index > MAX_MONTHS_AHEAD {
        return Err(FieldError::new(
            FIELD,
            "must not be more than 50 years in the future",
        ));
    }
    Ok(year16)
}

/// Validates the CVC; its length is only enforced once the brand is known
/// for certain (`brand_known`), otherwise 3 or 4 digits are accepted.
fn validate_cvc(cvc: &str, brand: Brand, brand_known: bool) -> Result<(), FieldError> {
    const FIELD: &str = "card.cvc";
    if cvc.is_empty() {
        return Err(FieldError::new(FIELD, "is required"));
    }
    if !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::new(FIELD, "must contain only digits"));
    }
    if brand_known {
        let expected = brand.cvc_len();
        if cvc.len() != expected {
            return Err(FieldError::new(
                FIELD,
                format!("must be exactly {expected} digits for {}", brand.as_str()),
            ));
        }
    } else if !(3..=4).contains(&cvc.len()) {
        return Err(FieldError::new(FIELD, "must be 3 or 4 digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (i32, u32) = (2026, 11);

    fn input<'a>(number: &'a str, cvc: &'a str) -> CardInput<'a> {
        CardInput {
            number,
            exp_month: 12,
            exp_year: 2030,
            cvc,
        }
    }

    fn parse_ok(number: &str, cvc: &str) -> Card {
        match Card::parse(&input(number, cvc), TODAY) {
            Ok(card) => card,
            Err(errors) => panic!("expected valid card, got {errors:?}"),
        }
    }

    fn parse_err(i: &CardInput<'_>) -> Vec<FieldError> {
        match Card::parse(i, TODAY) {
            Ok(card) => panic!("expected errors, got {card:?}"),
            Err(errors) => errors,
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&'static str> {
        errors.iter().map(|e| e.field).collect()
    }

    #[test]
    fn test_cards_outcomes() {
        let cases = [
            ("4242424242424242", Outcome::Succeeded),
            ("4000000000000002", Outcome::Failed(Decline::CardDeclined)),
            (
                "4000000000009995",
                Outcome::Failed(Decline::InsufficientFunds),
            ),
            ("4000000000009987", Outcome::Failed(Decline::LostCard)),
            ("4000000000009979", Outcome::Failed(Decline::StolenCard)),
            ("4000000000000069", Outcome::Failed(Decline::ExpiredCard)),
            ("4000000000000127", Outcome::Failed(Decline::IncorrectCvc)),
            (
                "4000000000000119",
                Outcome::Failed(Decline::ProcessingError),
            ),
            ("5555555555554444", Outcome::Succeeded),
            ("6011111111111117", Outcome::Succeeded),
            ("2223003122003222", Outcome::Succeeded),
        ];
        for (number, expected) in cases {
            let card = parse_ok(number, "123");
            assert_eq!(charge(&card), expected, "number ending {}", card.last4());
        }
        let amex = parse_ok("378282246310005", "1234");
        assert_eq!(charge(&amex), Outcome::Succeeded);
    }

    #[test]
    fn unknown_brand_can_be_charged() {
        // Luhn-valid, 16 digits, prefix 9 -> unknown brand.
        let card = parse_ok("9000000000000001", "123");
        assert_eq!(card.brand(), Brand::Unknown);
        assert_eq!(charge(&card), Outcome::Succeeded);
    }

    #[test]
    fn decline_codes_and_retryable() {
        let all = [
            (Decline::CardDeclined, "card_declined"),
            (Decline::InsufficientFunds, "insufficient_funds"),
            (Decline::LostCard, "lost_card"),
            (Decline::StolenCard, "stolen_card"),
            (Decline::ExpiredCard, "expired_card"),
            (Decline::IncorrectCvc, "incorrect_cvc"),
            (Decline::ProcessingError, "processing_error"),
        ];
        for (decline, code) in all {
            assert_eq!(decline.code(), code);
            assert_eq!(decline.retryable(), decline == Decline::ProcessingError);
        }
    }

    #[test]
    fn luhn_failure() {
        let errors = parse_err(&input("4242424242424241", "123"));
        assert_eq!(fields(&errors), vec!["card.number"]);
    }

    #[test]
    fn separators_are_stripped() {
        let a = parse_ok("4242 4242 4242 4242", "123");
        let b = parse_ok("4242-4242-4242-4242", "123");
        let c = parse_ok(" 4242-4242 4242-4242 ", "123");
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.last4(), "4242");
        assert_eq!(charge(&a), Outcome::Succeeded);
    }

    #[test]
    fn too_short_and_too_long() {
        // 11 digits (Luhn-valid) and 20 digits.
        for number in ["42424242428", "42424242424242424242"] {
            let errors = parse_err(&input(number, "123"));
            assert_eq!(fields(&errors), vec!["card.number"]);
            assert!(errors[0].message.contains("between 12 and 19"));
        }
    }

    #[test]
    fn non_digits_and_empty() {
        for number in [
            "4242x42424242424",
            "4242.4242.4242.4242",
            "４２４２424242424242",
            "",
        ] {
            let errors = parse_err(&input(number, "123"));
            assert_eq!(fields(&errors), vec!["card.number"], "input {number:?}");
        }
    }

    #[test]
    fn month_out_of_range() {
        for month in [0, 13, -1, 1000] {
            let mut i = input("4242424242424242", "123");
            i.exp_month = month;
            let errors = parse_err(&i);
            assert_eq!(fields(&errors), vec!["card.exp_month"]);
        }
    }

    #[test]
    fn expiry_relative_to_today() {
        let mut i = input("4242424242424242", "123");
        i.exp_month = 11;
        i.exp_year = 2026;
        assert!(Card::parse(&i, TODAY).is_ok());

        i.exp_month = 10;
        let errors = parse_err(&i);
        assert_eq!(fields(&errors), vec!["card.exp_year"]);
        assert_eq!(errors[0].message, "the card has expired");

        i.exp_month = 12;
        i.exp_year = 2025;
        assert_eq!(parse_err(&i)[0].message, "the card has expired");
    }

    #[test]
    fn two_digit_year() {
        let mut i = input("4242424242424242", "123");
        i.exp_year = 30;
        let card = match Card::parse(&i, TODAY) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(card.exp_year(), 2030);
        assert_eq!(card.exp_month(), 12);

        i.exp_year = 25;
        assert_eq!(parse_err(&i)[0].message, "the card has expired");
    }

    #[test]
    fn invalid_year_range() {
        for year in [-1, 100, 1999, 2101, 20_300] {
            let mut i = input("4242424242424242", "123");
            i.exp_year = year;
            assert_eq!(fields(&parse_err(&i)), vec!["card.exp_year"], "year {year}");
        }
    }

    #[test]
    fn expiry_too_far_ahead() {
        let mut i = input("4242424242424242", "123");
        i.exp_year = 2076;
        i.exp_month = 11;
        assert!(Card::parse(&i, TODAY).is_ok());
        i.exp_month = 12;
        assert_eq!(fields(&parse_err(&i)), vec!["card.exp_year"]);
        i.exp_year = 2100;
        assert_eq!(fields(&parse_err(&i)), vec!["card.exp_year"]);
    }

    #[test]
    fn cvc_length_depends_on_brand() {
        assert_eq!(parse_ok("378282246310005", "1234").brand(), Brand::Amex);

        let errors = parse_err(&input("378282246310005", "123"));
        assert_eq!(fields(&errors), vec!["card.cvc"]);

        let errors = parse_err(&input("4242424242424242", "1234"));
        assert_eq!(fields(&errors), vec!["card.cvc"]);

        for cvc in ["", "12", "12a", "1 3"] {
            let errors = parse_err(&input("4242424242424242", cvc));
            assert_eq!(fields(&errors), vec!["card.cvc"], "cvc {cvc:?}");
        }
    }

    #[test]
    fn collects_all_errors() {
        let i = CardInput {
            number: "4242424242424241",
            exp_month: 13,
            exp_year: 2020,
            cvc: "12x",
        };
        let errors = parse_err(&i);
        assert_eq!(
            fields(&errors),
            vec!["card.number", "card.exp_month", "card.exp_year", "card.cvc"]
        );
    }

    #[test]
    fn brand_detection() {
        let cases = [
            ("4242424242424242", Brand::Visa),
            ("5555555555554444", Brand::Mastercard),
            ("5105105105105100", Brand::Mastercard),
            ("2223003122003222", Brand::Mastercard),
            ("378282246310005", Brand::Amex),
            ("371449635398431", Brand::Amex),
            ("6011111111111117", Brand::Discover),
            ("6500000000000002", Brand::Discover),
            ("6445644564456445", Brand::Discover),
            ("9000000000000001", Brand::Unknown),
        ];
        for (number, brand) in cases {
            assert_eq!(detect_brand(number), brand, "{number}");
        }
        assert_eq!(
            parse_ok("2223003122003222", "123").brand(),
            Brand::Mastercard
        );
        assert_eq!(detect_brand("2220999999999999"), Brand::Unknown);
        assert_eq!(detect_brand("2721000000000000"), Brand::Unknown);
        assert_eq!(detect_brand("6430000000000000"), Brand::Unknown);
        assert_eq!(Brand::Visa.as_str(), "visa");
        assert_eq!(Brand::Mastercard.as_str(), "mastercard");
        assert_eq!(Brand::Amex.as_str(), "amex");
        assert_eq!(Brand::Discover.as_str(), "discover");
        assert_eq!(Brand::Unknown.as_str(), "unknown");
    }

    #[test]
    fn debug_never_shows_number_or_cvc() {
        let i = CardInput {
            number: "4242 4242 4242 4242",
            exp_month: 12,
            exp_year: 2030,
            cvc: "987",
        };
        let card = match Card::parse(&i, TODAY) {
            Ok(c) => c,
            Err(e) => panic!("{e:?}"),
        };
        let card_dbg = format!("{card:?}");
        let card_pretty = format!("{card:#?}");
        let input_dbg = format!("{i:?}");
        let input_pretty = format!("{i:#?}");
        assert_eq!(
            card_dbg,
            r#"Card { brand: Visa, last4: "4242", exp: 12/2030 }"#
        );
        for s in [&card_dbg, &card_pretty, &input_dbg, &input_pretty] {
            assert!(!s.contains("4242424242424242"), "{s}");
            assert!(!s.contains("4242 4242 4242 4242"), "{s}");
            assert!(!s.contains("987"), "{s}");
            assert!(s.contains("4242"), "{s}");
        }
        assert!(input_dbg.contains("Visa"));

        // Short input: last4 is withheld rather than echoing most of the number.
        let short = input("1234567", "4321");
        let short_dbg = format!("{short:?}");
        assert!(!short_dbg.contains("4567"), "{short_dbg}");
        assert!(!short_dbg.contains("4321"), "{short_dbg}");
    }

    #[test]
    fn error_messages_never_contain_number_or_cvc() {
        let i = CardInput {
            number: "4242424242424241",
            exp_month: 0,
            exp_year: 2010,
            cvc: "98765",
        };
        let errors = parse_err(&i);
        assert_eq!(errors.len(), 4);
        for e in &errors {
            let text = format!("{e} {e:?}");
            assert!(!text.contains("4242424242424241"), "{text}");
            assert!(!text.contains("98765"), "{text}");
        }
    }
}
