//! Plumbing shared by every ecom service, written once: configuration, errors, authentication,
//! telemetry, metrics, health, HTTP and gRPC server setup, graceful shutdown.
//!
//! Domain types never live here: services share contracts through `proto/` only.

pub mod accounts;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod error_code;
pub mod grpc;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod json;
pub mod metrics;
pub mod page;
pub mod ratelimit;
pub mod redis;
pub mod service_tokens;
pub mod shutdown;
pub mod startup;
pub mod tasks;
pub mod telemetry;

/// The platform's services and default ports (a crate of its own: the operator reads it too).
pub use ecom_platform as platform;
pub use error::{ApiError, AppJson, AppPath, AppQuery, ErrorCode, FieldError};

/// Crates the exported macros name, so services need not import them for the macros' sake.
#[doc(hidden)]
pub mod reexports {
    pub use axum;
    pub use sqlx;
}
#[cfg(feature = "testing")]
pub mod testing;
