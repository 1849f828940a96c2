//! Products' domain types and the commands that write the catalogue and the stock: built once at
//! the edge (`TryFrom` an HTTP body or a gRPC request), trusted after.

mod listing;
mod money;
mod product;
mod stock;

use ecom_shared::FieldError;
pub use listing::{Listing, ListingParams, Sort};
pub use money::Money;
pub use product::{
    BAD_STOCK, MAX_STOCK, NewProduct, Product, ProductPatch, ProductUpdate, category, description,
    name, stock,
};
pub use stock::{Line, MAX_QUANTITY, Quote, ReserveStock, parse_lines};

/// The field errors of one command, collected so that a client learns of every bad field at
/// once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// The value of `result`, or `None` with its error recorded against `field`.
    pub fn check<T, M: Into<String>>(&mut self, field: &str, result: Result<T, M>) -> Option<T> {
        result.map_err(|m| self.push(field, m)).ok()
    }

    /// `command` when no field was refused; every error otherwise. A command's refused parts
    /// may be placeholders (`unwrap_or_default`): they never get out.
    pub fn finish<T>(self, command: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(command)
        } else {
            Err(self.0)
        }
    }
}

impl From<FieldErrors> for Vec<FieldError> {
    fn from(e: FieldErrors) -> Self {
        e.0
    }
}
