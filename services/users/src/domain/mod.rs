//! Users' domain types: parsed once at the edge, trusted everywhere after.

mod commands;
mod email;
mod name;
mod password;

pub use commands::{Register, UpdateProfile};
pub use email::Email;
pub use name::FullName;
pub use password::Password;

pub use ecom_shared::auth::Role;

/// A user as the domain sees it (no password hash: that stays in the repository).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub is_active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub use ecom_shared::page::Page;
