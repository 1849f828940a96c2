//! The command line every ecom binary shares: `--version`, `healthcheck` (what a container
//! healthcheck or a Kubernetes exec probe runs: images have no shell and no curl), `migrate`, and a
//! one-line reason on stderr when the process cannot start.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

/// The version a binary reports: the crate version, and the commit when the build was given one
/// (`ECOM_BUILD_REVISION`, set by `make images` and the image build).
pub fn version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match option_env!("ECOM_BUILD_REVISION").filter(|r| !r.is_empty()) {
        Some(rev) => format!("{version} ({rev})"),
        None => version.to_owned(),
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// No argument: run the server.
    Serve,
    /// `migrate`: create the database when missing, apply the migrations, exit.
    Migrate,
    /// Answered without starting anything (`--version`, `--help`, `healthcheck`, a usage error).
    Exit(ExitCode),
}

/// Where `healthcheck` asks: the process's own HTTP port (from the environment, as the server
/// reads it) and path.
#[derive(Debug, Clone)]
pub struct Probe {
    pub port_env: String,
    pub default_port: u16,
    pub path: &'static str,
}

impl Probe {
    /// A service's `/health/ready` on `ECOM_<SERVICE>_HTTP_PORT`.
    pub fn ready(service: &crate::platform::Service) -> Self {
        Self {
            port_env: format!("{}_HTTP_PORT", service.env_prefix()),
            default_port: service.http_port,
            path: "/health/ready",
        }
    }

    fn port(&self) -> Result<u16, String> {
        match std::env::var(&self.port_env) {
            Err(_) => Ok(self.default_port),
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("{} is not a port: `{v}`", self.port_env)),
        }
    }

    /// GET the path on 127.0.0.1; `Ok` only for a 200.
    pub fn check(&self) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port()?));
        let timeout = Duration::from_secs(3);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        // One write: a request in pieces may meet a server that answers after the first line.
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            self.path
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("cannot send to {addr}: {e}"))?;
        // The status line may come in several reads: read until its end (or 64 bytes, or EOF).
        let mut head = Vec::with_capacity(64);
        let mut chunk = [0u8; 64];
        while head.len() < 64 && !head.windows(2).any(|w| w == b"\r\n") {
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("no answer from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
        }
        let status = String::from_utf8_lossy(&head)
            .split_whitespace()
            .nth(1)
            .map(str::to_owned)
            .unwrap_or_default();
        if status == "200" {
            Ok(())
        } else {
            Err(format!(
                "{} answered {}",
                self.path,
                if status.is_empty() {
                    "nothing"
                } else {
                    &status
                }
            ))
        }
    }
}

/// Reads the process's arguments; `migrate` says whether the binary has a database to migrate.
pub fn parse(binary: &str, probe: &Probe, migrate: bool) -> Command {
    let args: Vec<String> = std::env::args().skip(1).collect();
    parse_args(binary, probe, migrate, &args)
}

fn parse_args(binary: &str, probe: &Probe, migrate: bool, args: &[String]) -> Command {
    let usage = if migrate {
        format!("usage: {binary} [migrate | healthcheck | --version]")
    } else {
        format!("usage: {binary} [healthcheck | --version]")
    };
    match args.first().map(String::as_str) {
        None => Command::Serve,
        Some("migrate") if migrate && args.len() == 1 => Command::Migrate,
        Some("healthcheck") if args.len() == 1 => match probe.check() {
            Ok(()) => Command::Exit(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("{binary}: unhealthy: {e}");
                Command::Exit(ExitCode::FAILURE)
            }
        },
        Some("--version" | "-V" | "version") => {
            println!("{binary} {}", version());
            Command::Exit(ExitCode::SUCCESS)
        }
        Some("--help" | "-h" | "help") => {
            println!("{binary} {}\n{usage}", version());
            Command::Exit(ExitCode::SUCCESS)
        }
        Some(other) => {
            eprintln!("{binary}: unknown argument `{other}`\n{usage}");
            Command::Exit(ExitCode::from(2))
        }
    }
}

/// Runs `main` on a multi-threaded runtime and turns its error into one line on stderr
/// (`users: cannot connect to PostgreSQL: ...`) and exit code 1: what a container log shows when
/// a setting is missing or the database is unreachable.
pub fn run<F>(binary: &str, main: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{binary}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{binary} stopped");
            crate::telemetry::flush();
            eprintln!("{binary}: {}", one_line(&e));
            ExitCode::FAILURE
        }
    };
    crate::telemetry::flush();
    code
}

/// The error and its causes on one line (config errors list several problems on several lines).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for line in format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let item = line.trim_start_matches("- ");
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(item);
    }
    out
}

/// The `main` of a service with a database (`users`, `products`, `orders`, `payments`): the crate
/// exports `Application`, `Config`, `MIGRATOR` and `config::SERVICE` (its row of the platform's
/// table).
#[macro_export]
macro_rules! service_main {
    ($service:ident) => {
        fn main() -> ::std::process::ExitCode {
            use $crate::cli::{Command, Probe};
            let name = stringify!($service);
            let command =
                match $crate::cli::parse(name, &Probe::ready($service::config::SERVICE), true) {
                    Command::Exit(code) => return code,
                    command => command,
                };
            $crate::cli::run(name, async move {
                $crate::telemetry::init(name);
                let config = $service::Config::from_env()?;
                config.common.announce_environment();
                if command == Command::Migrate {
                    return $crate::db::migrate(&config.common.database_url, &$service::MIGRATOR)
                        .await;
                }
                let shutdown = $crate::shutdown::token_on_signal();
                $service::Application::build(config)
                    .await?
                    .run(shutdown)
                    .await
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use std::{io::BufRead, net::TcpListener};

    use super::*;

    fn probe(port_env: &str, port: u16) -> Probe {
        Probe {
            port_env: port_env.to_owned(),
            default_port: port,
            path: "/health/ready",
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A one-shot HTTP server answering `status` to the first request.
    fn answer_once(status: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                // The whole request before the answer: closing with unread bytes would reset
                // the connection under the answer.
                let mut reader = std::io::BufReader::new(&s);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                // In pieces, as a server may send it: the probe must read the whole status line.
                for piece in ["HTTP/1.1 ", status, "\r\ncontent-length: 0\r\n\r\n"] {
                    let _ = s.write_all(piece.as_bytes());
                    let _ = s.flush();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
        });
        port
    }

    #[test]
    fn subcommands_are_recognised() {
        let p = probe("ECOM_CLI_TEST_UNSET_PORT", 1);
        assert_eq!(parse_args("users", &p, true, &[]), Command::Serve);
        assert_eq!(
            parse_args("users", &p, true, &args(&["migrate"])),
            Command::Migrate
        );
        assert_eq!(
            parse_args("users", &p, true, &args(&["--version"])),
            Command::Exit(ExitCode::SUCCESS)
        );
        // The gateway has no database: `migrate` is a usage error there, as is anything unknown.
        assert_eq!(
            parse_args("gateway", &p, false, &args(&["migrate"])),
            Command::Exit(ExitCode::from(2))
        );
        assert_eq!(
            parse_args("users", &p, true, &args(&["serve", "--now"])),
            Command::Exit(ExitCode::from(2))
        );
    }

    #[test]
    fn healthcheck_passes_only_on_200() {
        let ok = answer_once("200 OK");
        assert_eq!(
            parse_args(
                "users",
                &probe("ECOM_CLI_TEST_UNSET_PORT", ok),
                true,
                &args(&["healthcheck"])
            ),
            Command::Exit(ExitCode::SUCCESS)
        );
        let not_ready = answer_once("503 Service Unavailable");
        let err = probe("ECOM_CLI_TEST_UNSET_PORT", not_ready)
            .check()
            .expect_err("503 is unhealthy");
        assert!(err.contains("503"), "{err}");
        // Nothing listening: a clear reason, no panic.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let err = probe("ECOM_CLI_TEST_UNSET_PORT", closed)
            .check()
            .expect_err("nothing listens");
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[test]
    fn errors_are_reported_on_one_line() {
        let e = anyhow::anyhow!("connection refused").context("cannot connect to PostgreSQL");
        assert_eq!(
            one_line(&e),
            "cannot connect to PostgreSQL: connection refused"
        );
        let config = anyhow::anyhow!("invalid configuration:\n  - A is bad\n  - B is bad");
        assert_eq!(
            one_line(&config),
            "invalid configuration: A is bad; B is bad"
        );
    }
}
