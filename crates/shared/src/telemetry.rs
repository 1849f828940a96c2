//! Tracing setup (JSON logs by default, `ECOM_LOG_FORMAT=pretty` for humans) and the request id
//! that follows a request across HTTP and gRPC hops.

use std::{
    io::{BufWriter, IsTerminal as _},
    sync::{Mutex, PoisonError},
};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, filter::Targets, fmt, prelude::*};

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

/// Lines a service may have formatted but not yet written before logging blocks the caller
/// (never drops a line: under a sustained flood the request that logs waits, as a direct write
/// would).
const BUFFERED_LINES: usize = 64 * 1024;

/// The writer thread's handle: dropping it writes out what is buffered.
static FLUSH_ON_EXIT: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the global subscriber once. Filter from `ECOM_LOG` (then `RUST_LOG`), default `info`.
/// Tests stay quiet unless `TEST_LOG` is set.
///
/// Lines are formatted on the calling thread and written to stdout by a thread of their own,
/// several at a time: a request never waits on a `write` to a pipe or terminal, and a burst of
/// requests costs one system call per batch instead of one per line. `ECOM_LOG_COLOR=0|1` turns
/// colours off or on for the pretty format (default: on when stdout is a terminal). Call [`flush`]
/// before the process exits.
pub fn init(service: &'static str) {
    let filter = std::env::var("ECOM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,sqlx=warn,tower_http=info,h2=warn,hyper=warn".to_owned());
    let (targets, env_filter) = filter_of(&filter);
    let pretty = std::env::var("ECOM_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("pretty"));
    let color = match std::env::var("ECOM_LOG_COLOR").as_deref() {
        Ok("0" | "false" | "off") => false,
        Ok("1" | "true" | "on") => true,
        _ => std::io::stdout().is_terminal(),
    };
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let registry = tracing_subscriber::registry()
        .with(targets)
        .with(env_filter);
    let result = if pretty {
        registry
            .with(
                fmt::layer()
                    .compact()
                    .with_target(false)
                    .with_ansi(color)
                    .with_writer(writer),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init()
    };
    if result.is_ok() {
        *FLUSH_ON_EXIT.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard);
        tracing::debug!(service, "telemetry initialised");
    }
}

/// The filter for `directives`: `Targets` when they are only targets and levels (the usual
/// case: decided per call site once, nothing to do when a span is entered or left), else an
/// `EnvFilter` (span and field directives, which it tracks per span at a cost on every request);
/// unparsable directives log at `info`.
fn filter_of(directives: &str) -> (Option<Targets>, Option<EnvFilter>) {
    let spans_or_fields = directives.contains(['[', '{']);
    if !spans_or_fields && let Ok(targets) = directives.parse::<Targets>() {
        return (Some(targets), None);
    }
    let env = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    (None, Some(env))
}

/// Writes out every line logged so far and stops the writer thread (waits up to a second);
/// what is logged afterwards is lost. For the end of `main`.
pub fn flush() {
    let guard = FLUSH_ON_EXIT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    drop(guard);
}

/// For tests: logs only when `TEST_LOG` is set.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some() {
        init("test");
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn plain_directives_use_the_cheap_filter_with_the_same_meaning() {
        let (targets, env) = filter_of("info,sqlx=warn,tower_http=debug");
        let targets = targets.expect("targets and levels only");
        assert!(env.is_none());
        assert!(targets.would_enable("gateway", &Level::INFO));
        assert!(!targets.would_enable("gateway", &Level::DEBUG));
        assert!(!targets.would_enable("sqlx::query", &Level::INFO));
        assert!(targets.would_enable("sqlx::query", &Level::WARN));
        assert!(targets.would_enable("tower_http::trace", &Level::DEBUG));
    }

    #[test]
    fn span_and_field_directives_keep_the_full_filter() {
        for directives in [
            "warn,[http{path=/orders}]=debug",
            "warn,gateway[{order_id}]=debug",
        ] {
            let (targets, env) = filter_of(directives);
            assert!(targets.is_none(), "{directives}");
            assert!(env.is_some(), "{directives}");
        }
        let (targets, env) = filter_of("not a [directive");
        assert!(targets.is_none());
        assert!(env.is_some(), "falls back to info");
    }
}
