//! Background work that runs beside the servers until shutdown (sweepers, relays,
//! housekeeping), and what happens when one ends early.
//!
//! A task that stops before shutdown (it panicked, or its loop returned) is always logged; when
//! the service cannot do its job without it ([`OnExit::Fatal`]: an outbox relay, a sweeper that
//! releases stock) it also stops the process gracefully with an error, so that the orchestrator
//! restarts it instead of a replica serving on without it (zero-to-production's `report_exit`).

use std::{future::Future, time::Duration};

use futures::future::BoxFuture;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

/// What an early end of a background task does to the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// The service is broken without the task: log it, shut down, exit with an error.
    Fatal,
    /// Only housekeeping is lost (old rows pile up for a while): log it and keep serving.
    Log,
}

/// Runs `work` every `every` (the first run at once) until `shutdown` is cancelled; an error is
/// logged and the next tick tries again. A run in progress finishes before the task ends.
pub fn spawn_periodic<F, Fut>(
    name: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    mut work: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = work().await {
                        tracing::warn!(task = name, error = %format!("{e:#}"), "background task failed");
                    }
                }
            }
        }
    })
}

/// A periodic task, described while the service is built and started by [`Tasks::start`].
pub struct Periodic {
    name: &'static str,
    every: Duration,
    on_exit: OnExit,
    work: Box<dyn FnMut() -> BoxFuture<'static, anyhow::Result<()>> + Send>,
}

impl Periodic {
    /// A task the service cannot do without (see [`OnExit::Fatal`]).
    pub fn essential<F, Fut>(name: &'static str, every: Duration, work: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::new(name, every, OnExit::Fatal, work)
    }

    /// Housekeeping (see [`OnExit::Log`]).
    pub fn housekeeping<F, Fut>(name: &'static str, every: Duration, work: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self::new(name, every, OnExit::Log, work)
    }

    fn new<F, Fut>(name: &'static str, every: Duration, on_exit: OnExit, work: F) -> Self
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name,
            every,
            on_exit,
            work: Box::new(move || Box::pin(work())),
        }
    }
}

/// The background tasks of one process, each watched until it ends.
pub struct Tasks {
    shutdown: CancellationToken,
    watchers: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Tasks {
    /// Tasks that stop when `shutdown` is cancelled, and cancel it when a fatal one ends early.
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            watchers: Vec::new(),
        }
    }

    /// Starts `task` on its timer.
    pub fn start(&mut self, task: Periodic) {
        let handle = spawn_periodic(task.name, task.every, self.shutdown.clone(), task.work);
        self.watch(task.name, task.on_exit, handle);
    }

    /// Watches a task spawned elsewhere, which should run until `shutdown`.
    pub fn watch(&mut self, name: &'static str, on_exit: OnExit, task: JoinHandle<()>) {
        let shutdown = self.shutdown.clone();
        self.watchers.push(tokio::spawn(async move {
            let ended = task.await;
            let Some(reason) = early_end(ended, shutdown.is_cancelled()) else {
                return Ok(());
            };
            match on_exit {
                OnExit::Fatal => {
                    tracing::error!(task = name, %reason, "an essential background task ended: shutting down");
                    shutdown.cancel();
                    Err(anyhow::anyhow!("background task `{name}` {reason}"))
                }
                OnExit::Log => {
                    tracing::error!(task = name, %reason, "a background task ended; serving on without it");
                    Ok(())
                }
            }
        }));
    }

    /// Waits for every task to end (cancel the shutdown token first); the error of the first
    /// fatal task that ended early, if any.
    pub async fn join(self) -> anyhow::Result<()> {
        let mut first = Ok(());
        for watcher in self.watchers {
            let ended = watcher
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("task watcher failed: {e}")));
            if first.is_ok() {
                first = ended;
            }
        }
        first
    }
}

/// Why a task's end was not the expected one (`None`: it ended after shutdown, as it should).
fn early_end(ended: Result<(), JoinError>, shutting_down: bool) -> Option<String> {
    match ended {
        Ok(()) if shutting_down => None,
        Ok(()) => Some("returned before shutdown".to_owned()),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Some(format!("panicked: {message}"))
        }
        Err(_) => Some("was cancelled".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn runs_until_shutdown_and_survives_errors() {
        let runs = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counter = runs.clone();
        let handle = spawn_periodic(
            "test",
            Duration::from_millis(5),
            shutdown.clone(),
            move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n.is_multiple_of(2) {
                        anyhow::bail!("every other run fails")
                    } else {
                        Ok(())
                    }
                }
            },
        );
        while runs.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        handle.await.expect("task ends cleanly");
    }

    /// A panic in an essential task cancels the shutdown token (the servers stop) and `join`
    /// reports it; a panic in housekeeping is only logged.
    #[tokio::test]
    async fn a_panicking_essential_task_shuts_down_with_an_error() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new(shutdown.clone());
        tasks.start(Periodic::housekeeping(
            "purge",
            Duration::from_millis(5),
            || async { panic!("housekeeping bug") },
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!shutdown.is_cancelled(), "housekeeping is not fatal");
        tasks.start(Periodic::essential(
            "relay",
            Duration::from_millis(5),
            || async { panic!("relay bug") },
        ));
        tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
            .await
            .expect("the process shuts down");
        let err = tasks.join().await.expect_err("fatal");
        assert!(
            err.to_string().contains("`relay` panicked: relay bug"),
            "{err}"
        );
    }

    /// Tasks that end with the shutdown are no error; one that returns early is.
    #[tokio::test]
    async fn only_an_early_end_counts() {
        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new(shutdown.clone());
        tasks.start(Periodic::essential(
            "sweeper",
            Duration::from_millis(5),
            || async { Ok(()) },
        ));
        shutdown.cancel();
        tasks.join().await.expect("a clean stop");

        let shutdown = CancellationToken::new();
        let mut tasks = Tasks::new(shutdown.clone());
        tasks.watch("listener", OnExit::Fatal, tokio::spawn(async {}));
        let err = tasks.join().await.expect_err("returned early");
        assert!(
            err.to_string().contains("returned before shutdown"),
            "{err}"
        );
        assert!(shutdown.is_cancelled());
    }
}
