//! Child processes: spawned in their own process group (so a terminal's Ctrl-C reaches only
//! `ecomctl`, which then stops them in order), their output streamed with a prefix on each line.

use std::{
    io::Write,
    os::unix::process::CommandExt as _,
    process::Stdio,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _},
    process::Child,
};

/// Writes `name | line` to stdout, whole lines only, each batch of lines in one write.
#[derive(Clone)]
pub struct Prefixed {
    width: usize,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

/// What one read from a child's pipe may take (a busy service writes many lines per read).
const READ_CHUNK: usize = 64 * 1024;
/// A "line" longer than this without a newline is written as it is, so memory stays bounded.
const MAX_LINE: usize = 1024 * 1024;

impl Prefixed {
    pub fn new(width: usize) -> Self {
        Self::to(width, Box::new(std::io::stdout()))
    }

    fn to(width: usize, out: Box<dyn Write + Send>) -> Self {
        Self {
            width,
            out: Arc::new(Mutex::new(out)),
        }
    }

    pub fn line(&self, name: &str, line: &str) {
        self.write(&self.prefix_lines(name, line.as_bytes()));
    }

    /// `text` as prefixed lines (a trailing newline ends the last line; none is added twice).
    fn prefix_lines(&self, name: &str, text: &[u8]) -> Vec<u8> {
        let prefix = format!("{name:>width$} | ", width = self.width);
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let lines = text.split(|&b| b == b'\n');
        let mut out = Vec::with_capacity(text.len() + (prefix.len() + 1) * 8);
        for line in lines {
            out.extend_from_slice(prefix.as_bytes());
            out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            out.push(b'\n');
        }
        out
    }

    fn write(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

/// Streams `src` through `log` under `name`: every read's complete lines in one write, the rest
/// kept for the next read.
async fn pump(name: &'static str, mut src: impl AsyncRead + Unpin, log: Prefixed) {
    let mut pending: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0; READ_CHUNK];
    loop {
        let n = match src.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let complete = match pending.iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            None if pending.len() > MAX_LINE => pending.len(),
            None => continue,
        };
        let lines = log.prefix_lines(name, &pending[..complete]);
        // Writing to a terminal or a full pipe blocks: not on the runtime's threads.
        let writer = log.clone();
        let _ = tokio::task::spawn_blocking(move || writer.write(&lines)).await;
        pending.drain(..complete);
    }
    if !pending.is_empty() {
        log.write(&log.prefix_lines(name, &pending));
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
        tokio::spawn(pump(name, out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(name, err, log.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn lines_split_across_reads_come_out_whole() {
        let captured = Captured::default();
        let log = Prefixed::to(3, Box::new(captured.clone()));
        let (mut child_side, our_side) = tokio::io::duplex(8);
        let pumping = tokio::spawn(pump("x", our_side, log));
        for piece in ["hel", "lo\nwor", "ld\nsecond ", "to last\nno newline"] {
            tokio::io::AsyncWriteExt::write_all(&mut child_side, piece.as_bytes())
                .await
                .expect("write");
        }
        drop(child_side);
        pumping.await.expect("pump");
        let out = String::from_utf8(captured.0.lock().expect("sink").clone()).expect("utf-8");
        assert_eq!(
            out,
            "  x | hello\n  x | world\n  x | second to last\n  x | no newline\n"
        );
    }

    #[test]
    fn every_line_gets_the_prefix_once() {
        let log = Prefixed::new(5);
        let out = log.prefix_lines("ab", b"one\r\ntwo\n\nlast\n");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "   ab | one\n   ab | two\n   ab | \n   ab | last\n"
        );
        let out = log.prefix_lines("ab", b"no newline");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "   ab | no newline\n"
        );
    }
}
