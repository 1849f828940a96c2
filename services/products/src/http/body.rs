//! The JSON bodies of the catalogue writes: what `POST /products` and `PATCH /products/{id}`
//! read, which is also their OpenAPI schema (`ProductInput`, `ProductUpdateInput`), and how each
//! becomes a domain command.
//!
//! Every field is read as a [`Field`] (absent, null, text, a number, or another JSON type), so a
//! wrong type is a field error in our words (`name: must be a string`), reported together with
//! every other bad field rather than as serde's first complaint.

use ecom_shared::FieldError;
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::{Number, Value};

use crate::{
    domain::{self, FieldErrors, Money, NewProduct, ProductPatch},
    openapi,
};

/// One field of a JSON body, as it was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field {
    #[default]
    Absent,
    Null,
    Text(String),
    Number(Number),
    /// A boolean, an array or an object.
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Null => Self::Null,
            Value::String(s) => Self::Text(s),
            Value::Number(n) => Self::Number(n),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => Self::Other,
        })
    }
}

impl Field {
    /// The field when it was sent at all (`null` included).
    fn sent(&self) -> Option<&Self> {
        (*self != Self::Absent).then_some(self)
    }

    /// The field when it was sent with a value (neither absent nor `null`).
    fn given(&self) -> Option<&Self> {
        (!matches!(self, Self::Absent | Self::Null)).then_some(self)
    }

    /// Text that `rule` accepts.
    fn text(&self, rule: fn(&str) -> Result<String, String>) -> Result<String, String> {
        match self {
            Self::Text(s) => rule(s),
            _ => Err("must be a string".to_owned()),
        }
    }

    /// An amount: a decimal string (`"19.99"`) or a plain JSON number (`19.99`), never one
    /// written with an exponent.
    fn money(&self) -> Result<Money, &'static str> {
        match self {
            Self::Text(s) => Money::parse(s),
            Self::Number(n) => {
                let text = n.to_string();
                if text.contains(['e', 'E']) {
                    return Err(Money::NOT_AN_AMOUNT);
                }
                Money::parse(&text)
            }
            _ => Err(Money::NOT_AN_AMOUNT),
        }
    }

    /// A stock count: a whole JSON number (`5.0` is 5 to JSON and to `type: integer`).
    fn stock(&self) -> Result<i64, &'static str> {
        match self {
            Self::Number(n) => ecom_shared::json::whole_number(&Value::Number(n.clone()))
                .ok_or(domain::BAD_STOCK)
                .and_then(domain::stock),
            _ => Err(domain::BAD_STOCK),
        }
    }
}

/// A JSON object body. Anything else is the field error `body: must be a JSON object`, as it
/// always was (serde's derive would name the Rust type instead). A key sent twice keeps its
/// last value, as JSON parsers commonly do.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            object @ Value::Object(_) => T::deserialize(object).map(Self).map_err(D::Error::custom),
            _ => Err(D::Error::custom("must be a JSON object")),
        }
    }
}

/// A new product.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ProductInput {
    #[schema(schema_with = openapi::name, required = true)]
    pub name: Field,
    #[schema(schema_with = openapi::new_description)]
    pub description: Field,
    #[schema(schema_with = openapi::new_price, required = true)]
    pub price: Field,
    #[schema(schema_with = openapi::new_stock, required = true)]
    pub stock: Field,
    #[schema(schema_with = openapi::nullable_category)]
    pub category: Field,
}

impl TryFrom<ProductInput> for NewProduct {
    type Error = Vec<FieldError>;

    fn try_from(b: ProductInput) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::default();
        // Missing required fields are reported first, then each field's own error.
        for (field, value) in [("name", &b.name), ("price", &b.price), ("stock", &b.stock)] {
            if value.given().is_none() {
                errors.push(field, "is required");
            }
        }
        // A refused part is a placeholder that `finish` never lets out.
        let new = Self {
            name: (b.name.given())
                .and_then(|f| errors.check("name", f.text(domain::name)))
                .unwrap_or_default(),
            description: errors
                .check(
                    "description",
                    (b.description.given())
                        .map_or(Ok(String::new()), |f| f.text(domain::description)),
                )
                .unwrap_or_default(),
            price: (b.price.given())
                .and_then(|f| errors.check("price", f.money()))
                .unwrap_or_default(),
            stock: (b.stock.given())
                .and_then(|f| errors.check("stock", f.stock()))
                .unwrap_or_default(),
            category: (b.category.given())
                .and_then(|f| errors.check("category", f.text(domain::category))),
        };
        errors.finish(new)
    }
}

/// A partial update; absent fields stay. `stock` sets what can be bought; `category: null` clears it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ProductUpdateInput {
    #[schema(schema_with = openapi::name)]
    pub name: Field,
    #[schema(schema_with = openapi::description)]
    pub description: Field,
    #[schema(schema_with = openapi::patch_price)]
    pub price: Field,
    #[schema(schema_with = openapi::patch_stock)]
    pub stock: Field,
    #[schema(schema_with = openapi::nullable_category)]
    pub category: Field,
}

impl TryFrom<ProductUpdateInput> for ProductPatch {
    type Error = Vec<FieldError>;

    /// A field sent as `null` is refused, except `category` (null clears it).
    fn try_from(b: ProductUpdateInput) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::default();
        let patch = Self {
            name: (b.name.sent()).and_then(|f| errors.check("name", f.text(domain::name))),
            description: (b.description.sent())
                .and_then(|f| errors.check("description", f.text(domain::description))),
            price: (b.price.sent()).and_then(|f| errors.check("price", f.money())),
            stock: (b.stock.sent()).and_then(|f| errors.check("stock", f.stock())),
            category: (b.category.sent()).and_then(|f| match f {
                Field::Null => Some(None),
                f => errors.check("category", f.text(domain::category)).map(Some),
            }),
        };
        errors.finish(patch)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn new_product(body: Value) -> Result<NewProduct, Vec<FieldError>> {
        let Object(input) = serde_json::from_value::<Object<ProductInput>>(body).expect("object");
        NewProduct::try_from(input)
    }

    fn patch(body: Value) -> Result<ProductPatch, Vec<FieldError>> {
        let Object(input) =
            serde_json::from_value::<Object<ProductUpdateInput>>(body).expect("object");
        ProductPatch::try_from(input)
    }

    fn fields(errors: &[FieldError]) -> Vec<(&str, &str)> {
        errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect()
    }

    #[test]
    fn new_product_reports_every_bad_field() {
        let errs =
            new_product(json!({"name": " ", "price": "1.234", "stock": -1})).expect_err("bad");
        assert_eq!(
            fields(&errs),
            [
                ("name", "must not be empty"),
                ("price", "must have at most two decimal places"),
                ("stock", "must be a whole number between 0 and 1000000000")
            ]
        );
        let errs = new_product(json!({"description": null})).expect_err("empty");
        assert_eq!(
            fields(&errs),
            [
                ("name", "is required"),
                ("price", "is required"),
                ("stock", "is required")
            ]
        );
        // Required fields first, then each field's own error, in field order.
        let errs =
            new_product(json!({"name": 5, "description": true, "stock": 1.5, "category": ""}))
                .expect_err("bad types");
        assert_eq!(
            fields(&errs),
            [
                ("price", "is required"),
                ("name", "must be a string"),
                ("description", "must be a string"),
                ("stock", "must be a whole number between 0 and 1000000000"),
                ("category", "must not be empty")
            ]
        );
        let ok = new_product(json!({"name": " Mug ", "price": "4.5", "stock": 3.0, "x": [1]}))
            .expect("ok");
        assert_eq!(
            (
                ok.name.as_str(),
                ok.price.to_string().as_str(),
                ok.stock,
                ok.category
            ),
            ("Mug", "4.50", 3, None)
        );
        assert_eq!(ok.description, "");
    }

    #[test]
    fn prices_are_strings_or_plain_numbers() {
        let price = |v: Value| {
            new_product(json!({"name": "x", "price": v, "stock": 1})).map(|p| p.price.to_string())
        };
        assert_eq!(price(json!(19.99)).as_deref(), Ok("19.99"));
        assert_eq!(price(json!(3)).as_deref(), Ok("3.00"));
        assert_eq!(price(json!(" 7 ")).as_deref(), Ok("7.00"));
        for bad in [
            json!(1e300),
            json!(0.001),
            json!(-1),
            json!(true),
            json!("NaN"),
            json!([]),
        ] {
            let errs = price(bad.clone()).expect_err("refused");
            assert_eq!(errs[0].field, "price", "{bad}");
        }
        assert_eq!(
            fields(&price(json!(1e300)).expect_err("exponent")),
            [("price", Money::NOT_AN_AMOUNT)]
        );
    }

    #[test]
    fn a_patch_takes_what_is_sent_and_null_only_for_category() {
        assert_eq!(patch(json!({})), Ok(ProductPatch::default()));
        let p = patch(json!({"price": 5, "category": null, "stock": 2})).expect("ok");
        assert_eq!(
            (p.price.map(|m| m.to_string()), p.stock, p.category, p.name),
            (Some("5.00".to_owned()), Some(2), Some(None), None)
        );
        let errs = patch(json!({"name": null, "description": null, "price": null, "stock": null}))
            .expect_err("nulls");
        assert_eq!(
            fields(&errs),
            [
                ("name", "must be a string"),
                ("description", "must be a string"),
                ("price", Money::NOT_AN_AMOUNT),
                ("stock", "must be a whole number between 0 and 1000000000")
            ]
        );
    }

    #[test]
    fn only_an_object_is_a_body() {
        for body in [json!([1, 2]), json!("name"), json!(5), json!(null)] {
            let err = serde_json::from_value::<Object<ProductInput>>(body.clone())
                .expect_err("not an object");
            assert_eq!(err.to_string(), "must be a JSON object", "{body}");
        }
    }
}
