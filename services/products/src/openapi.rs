//! The OpenAPI schemas of what the REST adapter accepts (the fields of the bodies in
//! [`crate::http::body`], and the listing parameters), written to match the parsing in
//! [`crate::domain`] exactly (schemathesis checks both directions: a request the document allows
//! must not be refused as invalid, and one it forbids must not be accepted).
//!
//! Text is trimmed before it is checked (`str::trim`, Unicode `White_Space`), so the patterns
//! spell out that set instead of `\s`, whose meaning differs between regex dialects.

use utoipa::{
    IntoParams,
    openapi::{
        RefOr, Required,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
        },
    },
};

use crate::domain::{ListingParams, MAX_STOCK, Money};

/// What `str::trim` removes: the Unicode `White_Space` characters.
pub const WHITESPACE: &str =
    r"[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// A first or last character of trimmed text: neither whitespace nor a control character.
const EDGE: &str = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
/// Inside body text: anything but control characters, except tab and newline.
const BODY_INNER: &str = r"[^\x00-\x08\x0b-\x1f\x7f-\x9f]";
/// Inside a search or category filter: anything but control characters.
const FILTER_INNER: &str = r"[^\x00-\x1f\x7f-\x9f]";

/// Body text (`name`, `description`, `category`): at most `max` characters as sent, and after
/// trimming at least one character when `non_empty`, with no control character but tab and
/// newline.
pub fn body_text(max: usize, non_empty: bool, description: &str) -> ObjectBuilder {
    let core = format!("{EDGE}({BODY_INNER}*{EDGE})?");
    let core = if non_empty {
        core
    } else {
        format!("({core})?")
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max))
        .pattern(Some(format!("^{WHITESPACE}*{core}{WHITESPACE}*$")))
        .description(Some(description))
}

/// A listing filter: blank (no filter), or at most `max` characters after trimming, none of them
/// a control character.
pub fn filter_pattern(max: usize) -> String {
    let inner = max.saturating_sub(2);
    format!("^{WHITESPACE}*({EDGE}({FILTER_INNER}{{0,{inner}}}{EDGE})?)?{WHITESPACE}*$")
}

/// [`Money`] as text: digits with up to two decimals, at most
/// [`Money::MAX_INTEGER_DIGITS`] significant integer digits, surrounding whitespace ignored.
pub fn money_pattern(blank_allowed: bool) -> String {
    let digits = Money::MAX_INTEGER_DIGITS;
    let amount = format!(r"0*[0-9]{{1,{digits}}}(\.[0-9]{{1,2}})?");
    let amount = if blank_allowed {
        format!("({amount})?")
    } else {
        amount
    };
    format!("^{WHITESPACE}*{amount}{WHITESPACE}*$")
}

/// The largest amount, as a JSON number.
const MAX_AMOUNT: f64 = 9_999_999_999.99;

/// A price in a body: a decimal string, or a JSON number without more than two decimals.
fn price(description: &str) -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(money_pattern(false)))
                .examples(["19.99"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(MAX_AMOUNT))
                .multiple_of(Some(0.01)),
        )
        .description(Some(description))
        .into()
}

fn stock(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(MAX_STOCK))
        .description(Some(description))
}

/// `schema`, or `null` (its `maxLength` and `pattern` apply to strings only).
fn or_null(schema: ObjectBuilder) -> ObjectBuilder {
    schema.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// `category` in a body: 1..=100 characters, or `null` for none.
pub fn nullable_category() -> ObjectBuilder {
    or_null(body_text(
        100,
        true,
        "1..=100 characters; optional, `null` means no category.",
    ))
}

/// `name` in a body (never `null`).
pub fn name() -> ObjectBuilder {
    body_text(200, true, "1..=200 characters.")
}

/// `description` of a new product.
pub fn new_description() -> ObjectBuilder {
    or_null(body_text(
        10_000,
        false,
        "Up to 10 000 characters; absent or `null`: empty.",
    ))
}

/// `description` in a patch (never `null`).
pub fn description() -> ObjectBuilder {
    body_text(10_000, false, "Up to 10 000 characters.")
}

/// `price` of a new product.
pub fn new_price() -> RefOr<Schema> {
    price("A decimal amount (`\"19.99\"`, or a plain JSON number) with at most two places, >= 0.")
}

/// `price` in a patch.
pub fn patch_price() -> RefOr<Schema> {
    price("A decimal amount with at most two places, >= 0.")
}

/// `stock` of a new product.
pub fn new_stock() -> ObjectBuilder {
    stock("Units available.")
}

/// `stock` in a patch.
pub fn patch_stock() -> ObjectBuilder {
    stock("Units that can be bought.")
}

fn query(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An integer query parameter in `min..=max`, or its text as the service reads it (surrounding
/// whitespace, a sign and leading zeros are fine; blank means the default).
fn int_param(min: i64, max: i64, text_pattern: &str) -> RefOr<Schema> {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(min))
                .maximum(Some(max)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^{WHITESPACE}*({text_pattern})?{WHITESPACE}*$"
                ))),
        )
        .into()
}

/// The sort keys of a listing.
pub const SORTS: [&str; 5] = ["id", "price", "-price", "name", "-created_at"];

impl IntoParams for ListingParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let sorts = SORTS.join("|");
        vec![
            query(
                "limit",
                "Page size, 1..=100 (blank: 20).",
                int_param(1, 100, r"\+?0*([1-9][0-9]?|100)"),
            ),
            query(
                "offset",
                "Items to skip, 0..=1000000 (blank: 0).",
                int_param(0, 1_000_000, r"[+-]?0+|\+?0*([1-9][0-9]{0,5}|1000000)"),
            ),
            query(
                "search",
                "Full-text search (web syntax: `\"exact phrase\"`, `-exclude`, `or`); short words match by prefix. At most 200 characters; blank: no search.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(filter_pattern(200))),
            ),
            query(
                "category",
                "Only this category (at most 100 characters; blank: all).",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(filter_pattern(100))),
            ),
            query(
                "min_price",
                "Lowest price, a decimal amount (blank: none).",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(money_pattern(true))),
            ),
            query(
                "max_price",
                "Highest price, a decimal amount (blank: none).",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(money_pattern(true))),
            ),
            query(
                "sort",
                "`id` (default), `price`, `-price`, `name`, `-created_at`.",
                AnyOfBuilder::new()
                    .item(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(SORTS)),
                    )
                    .item(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(format!("^{WHITESPACE}*({sorts})?{WHITESPACE}*$"))),
                    ),
            ),
        ]
    }
}
