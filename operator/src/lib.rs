//! The ecom operator: reconciles a `Shop` (see `ecom-shop-api`) into the whole platform.
//!
//! - [`desired`]: a pure function from a Shop (and what the cluster offers) to the objects that
//!   should exist, byte-identical on every run.
//! - [`controller`]: the kube-rs controller: finalizer, server-side apply of the desired state,
//!   secrets generated once, status, suspend, backoff, metrics.
//! - [`rbac`]: the API calls the operator makes (the chart's RBAC is checked against it).

pub mod controller;
pub mod desired;
pub mod leader;
pub mod rbac;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "ecom-operator";

/// The operator's version (reported in `status.operatorVersion`, and the default platform
/// version when a Shop names none).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
