//! The Users writes as domain commands: built at the edge (`TryFrom` the HTTP body in `http.rs`,
//! the protobuf request in `grpc.rs`), every invalid field reported at once, trusted by the
//! service after that.

use ecom_shared::FieldError;

use super::{Email, FullName, Password};

/// A registration: a new account with role `user`.
#[derive(Debug)]
pub struct Register {
    pub email: Email,
    pub password: Password,
    pub full_name: FullName,
}

/// Changes to one's own profile; a new password ends every other session.
#[derive(Debug, Default)]
pub struct UpdateProfile {
    pub full_name: Option<FullName>,
    pub password: Option<Password>,
}

/// Collects every field error of one command.
#[derive(Default)]
struct Fields(Vec<FieldError>);

impl Fields {
    fn required<'a>(&mut self, field: &str, v: Option<&'a str>) -> Option<&'a str> {
        if v.is_none() {
            self.0.push(FieldError::new(field, "is required"));
        }
        v
    }

    fn parse<T>(
        &mut self,
        field: &str,
        v: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        parse(v?)
            .map_err(|m| self.0.push(FieldError::new(field, m)))
            .ok()
    }
}

impl Register {
    /// Every field is required; each is parsed into its domain type.
    pub fn parse(
        email: Option<&str>,
        password: Option<&str>,
        full_name: Option<&str>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::default();
        let email = f.required("email", email);
        let email = f.parse("email", email, Email::parse);
        let password = f.required("password", password);
        let password = f.parse("password", password, Password::parse_new);
        let full_name = f.required("full_name", full_name);
        let full_name = f.parse("full_name", full_name, FullName::parse);
        match (email, password, full_name) {
            (Some(email), Some(password), Some(full_name)) => Ok(Self {
                email,
                password,
                full_name,
            }),
            _ => Err(f.0),
        }
    }
}

impl UpdateProfile {
    /// Absent fields stay as they are; a present one must be valid.
    pub fn parse(full_name: Option<&str>, password: Option<&str>) -> Result<Self, Vec<FieldError>> {
        let mut f = Fields::default();
        let full_name = f.parse("full_name", full_name, FullName::parse);
        let password = f.parse("password", password, Password::parse_new);
        if f.0.is_empty() {
            Ok(Self {
                full_name,
                password,
            })
        } else {
            Err(f.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_names_every_bad_field_at_once() {
        let errors = Register::parse(Some("not-an-email"), None, Some(" ")).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "full_name"]);
        assert_eq!(errors[1].message, "is required");
        let ok = Register::parse(Some("A@Example.com"), Some("password123"), Some(" Ann "))
            .expect("valid");
        assert_eq!(ok.full_name.as_str(), "Ann");
    }

    #[test]
    fn a_profile_update_checks_only_what_is_sent() {
        let none = UpdateProfile::parse(None, None).expect("nothing to change");
        assert!(none.full_name.is_none() && none.password.is_none());
        let errors = UpdateProfile::parse(Some(""), Some("short")).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["full_name", "password"]);
    }
}
