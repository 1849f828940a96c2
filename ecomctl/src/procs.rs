//! Child processes: spawned in their own process group (so a terminal's Ctrl-C reaches only
//! `ecomctl`, which then stops them in order), their output streamed line by line with a prefix.

use std::{
    io::Write as _,
    os::unix::process::CommandExt as _,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Child,
};

/// Writes `name | line` to stdout, one whole line at a time.
#[derive(Clone)]
pub struct Prefixed {
    width: usize,
    out: Arc<Mutex<()>>,
}

impl Prefixed {
    pub fn new(width: usize) -> Self {
        Self {
            width,
            out: Arc::new(Mutex::new(())),
        }
    }

    pub fn line(&self, name: &str, line: &str) {
        let _guard = self.out.lock();
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{name:>width$} | {line}", width = self.width);
    }
}

/// Spawns `cmd` with piped output streamed through `log` under `name`.
pub fn spawn(
    name: &'static str,
    mut cmd: std::process::Command,
    log: &Prefixed,
) -> anyhow::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
    if let Some(out) = child.stdout.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.line(name, &l);
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log.line(name, &l);
            }
        });
    }
    Ok(child)
}

/// Sends `signal`, waits up to `grace`, then kills.
pub async fn stop(name: &str, mut child: Child, signal: Signal, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            eprintln!("{name} did not stop within {grace:?}: killing it");
            let _ = child.kill().await;
        }
    }
}
