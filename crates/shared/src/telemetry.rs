//! Tracing setup (JSON logs by default, `ECOM_LOG_FORMAT=pretty` for humans) and the request id
//! that follows a request across HTTP and gRPC hops.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The header (and gRPC metadata key) carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request this task is serving, so outgoing gRPC calls can carry it on.
    pub static REQUEST_ID: String;
}

/// The current request id, if this task serves a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Installs the global subscriber once. Filter from `ECOM_LOG` (then `RUST_LOG`), default `info`.
/// Tests stay quiet unless `TEST_LOG` is set.
pub fn init(service: &'static str) {
    let filter = std::env::var("ECOM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info,h2=warn,hyper=warn".to_owned());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let pretty = std::env::var("ECOM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("pretty"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if pretty {
        registry
            .with(fmt::layer().compact().with_target(false))
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// For tests: logs only when `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init("test");
    }
}
