//! Background work that runs on a timer until shutdown (sweepers, housekeeping).

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
}
