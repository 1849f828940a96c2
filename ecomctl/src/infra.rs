//! PostgreSQL and Redis for a laptop: the servers named by `ECOM_DATABASE_URL` /
//! `ECOM_REDIS_URL`, or private ones started from the local binaries with data under
//! `./.ecom/`, on ports that do not clash with system servers.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::process::Child;

use crate::procs::{self, Prefixed};

/// Default ports of the private servers (not 5432/6379, so system servers can stay).
pub const DEFAULT_PG_PORT: u16 = 54329;
pub const DEFAULT_REDIS_PORT: u16 = 63799;

pub struct Infra {
    pub postgres_url: String,
    pub redis_url: String,
    pub private: Vec<(&'static str, Child)>,
    pub description: Vec<(String, String)>,
}

/// Servers to use instead of private ones, from the environment.
pub struct Sources {
    pub postgres: Option<String>,
    pub redis: Option<String>,
}

impl Sources {
    /// The first non-empty variable of each list.
    pub fn from_env(postgres: &[&str], redis: &[&str]) -> Self {
        let first = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        };
        Self {
            postgres: first(postgres),
            redis: first(redis),
        }
    }
}

/// Finds a binary on PATH or in the usual Debian and Homebrew places.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = Vec::new();
    for pattern_dir in ["/usr/lib/postgresql", "/opt/homebrew/opt", "/usr/local/opt"] {
        if let Ok(entries) = std::fs::read_dir(pattern_dir) {
            for e in entries.flatten() {
                let p = e.path();
                let fname = p
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if pattern_dir == "/usr/lib/postgresql"
                    || fname.starts_with("postgresql")
                    || fname == "redis"
                {
                    versioned.push(p.join("bin").join(name));
                }
            }
        }
    }
    // Newest PostgreSQL first (directory names are versions).
    versioned.sort();
    versioned.reverse();
    candidates.extend(versioned);
    candidates.extend(
        [
            "/opt/homebrew/bin",
            "/usr/local/bin",
            "/usr/bin",
            "/usr/sbin",
        ]
        .iter()
        .map(|d| Path::new(d).join(name)),
    );
    candidates.into_iter().find(|p| p.is_file())
}

/// PostgreSQL refuses to run as root: when we are root, run it as the `postgres` (or `nobody`)
/// user and give that user the data directory.
fn unprivileged_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|n| nix::unistd::User::from_name(n).ok().flatten())
}

fn chown_tree(path: &Path, user: &nix::unistd::User) -> anyhow::Result<()> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid))?;
    if path.is_dir() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), user)?;
        }
    }
    Ok(())
}

fn as_user(cmd: &mut std::process::Command, user: Option<&nix::unistd::User>) {
    if let Some(u) = user {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
}

pub fn port_from_env(key: &str, default: u16) -> anyhow::Result<u16> {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{key}={v} is not a port")),
        _ => Ok(default),
    }
}

pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

const MISSING: &str = "PostgreSQL and Redis are needed. Either set ECOM_DATABASE_URL and ECOM_REDIS_URL to \
running servers, or install the server binaries:\n  Debian/Ubuntu: sudo apt-get install postgresql redis-server\n  \
macOS:         brew install postgresql@16 redis\nor start both with Docker:\n  \
docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16\n  docker run -d -p 6379:6379 redis:7\n  \
export ECOM_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres ECOM_REDIS_URL=redis://127.0.0.1:6379";

/// Provides both servers. `data_dir` holds the private servers' data; `fast` trades durability
/// for speed (tests).
pub async fn provide(
    data_dir: &Path,
    fast: bool,
    sources: Sources,
    log: &Prefixed,
) -> anyhow::Result<Infra> {
    let mut infra = Infra {
        postgres_url: String::new(),
        redis_url: String::new(),
        private: Vec::new(),
        description: Vec::new(),
    };
    let result = provide_into(&mut infra, data_dir, fast, sources, log).await;
    if let Err(e) = result {
        stop(&mut infra).await;
        return Err(e);
    }
    Ok(infra)
}

async fn provide_into(
    infra: &mut Infra,
    data_dir: &Path,
    fast: bool,
    sources: Sources,
    log: &Prefixed,
) -> anyhow::Result<()> {
    let (env_pg, env_redis) = (sources.postgres, sources.redis);
    let pg_bins = (find_binary("initdb"), find_binary("postgres"));
    let redis_bin = find_binary("redis-server");
    if (env_pg.is_none() && (pg_bins.0.is_none() || pg_bins.1.is_none()))
        || (env_redis.is_none() && redis_bin.is_none())
    {
        bail!("{MISSING}");
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;

    match env_pg {
        Some(url) => {
            infra
                .description
                .push(("PostgreSQL".into(), format!("{} (given)", redact(&url))));
            infra.postgres_url = url;
        }
        None => {
            let (Some(initdb), Some(postgres)) = pg_bins else {
                bail!("{MISSING}")
            };
            let port = port_from_env("ECOM_PG_PORT", DEFAULT_PG_PORT)?;
            let child = start_postgres(
                &initdb,
                &postgres,
                &data_dir.join("postgres"),
                port,
                fast,
                log,
            )
            .await?;
            infra.private.push(("postgres", child));
            infra.postgres_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            infra.description.push((
                "PostgreSQL".into(),
                format!(
                    "{} (private, data in {})",
                    infra.postgres_url,
                    data_dir.join("postgres").display()
                ),
            ));
        }
    }
    wait_for_postgres(&infra.postgres_url, &mut infra.private).await?;

    match env_redis {
        Some(url) => {
            infra
                .description
                .push(("Redis".into(), format!("{} (given)", redact(&url))));
            infra.redis_url = url;
        }
        None => {
            let Some(bin) = redis_bin else {
                bail!("{MISSING}")
            };
            let port = port_from_env("ECOM_REDIS_PORT", DEFAULT_REDIS_PORT)?;
            let child = start_redis(&bin, &data_dir.join("redis"), port, fast, log)?;
            infra.private.push(("redis", child));
            infra.redis_url = format!("redis://127.0.0.1:{port}");
            infra
                .description
                .push(("Redis".into(), format!("{} (private)", infra.redis_url)));
        }
    }
    wait_for_redis(&infra.redis_url).await?;
    Ok(())
}

/// Hides a password in a URL before printing it.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

async fn start_postgres(
    initdb: &Path,
    postgres: &Path,
    dir: &Path,
    port: u16,
    fast: bool,
    log: &Prefixed,
) -> anyhow::Result<Child> {
    if !port_is_free(port) {
        bail!("port {port} is taken: another `ecomctl up` may be running (or set ECOM_PG_PORT)");
    }
    let user = unprivileged_user();
    if !dir.join("PG_VERSION").exists() {
        std::fs::create_dir_all(dir)?;
        if let Some(u) = &user {
            chown_tree(dir, u)?;
        }
        log.line(
            "postgres",
            &format!("initialising a private cluster in {}", dir.display()),
        );
        let mut cmd = std::process::Command::new(initdb);
        cmd.arg("-D").arg(dir).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ]);
        if fast {
            cmd.arg("--no-sync");
        }
        as_user(&mut cmd, user.as_ref());
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        if !out.status.success() {
            bail!("initdb failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    } else if let Some(u) = &user {
        chown_tree(dir, u)?;
    }
    let mut cmd = std::process::Command::new(postgres);
    cmd.arg("-D")
        .arg(dir)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ])
        .args(["-c", "max_connections=200"]);
    if fast {
        cmd.args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]);
    }
    as_user(&mut cmd, user.as_ref());
    procs::spawn("postgres", cmd, log)
}

fn start_redis(
    bin: &Path,
    dir: &Path,
    port: u16,
    fast: bool,
    log: &Prefixed,
) -> anyhow::Result<Child> {
    if !port_is_free(port) {
        bail!("port {port} is taken: another `ecomctl up` may be running (or set ECOM_REDIS_PORT)");
    }
    std::fs::create_dir_all(dir)?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
    ])
    .args(["--appendonly", if fast { "no" } else { "yes" }])
    .arg("--dir")
    .arg(dir);
    procs::spawn("redis", cmd, log)
}

async fn wait_for_postgres(
    url: &str,
    children: &mut [(&'static str, Child)],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await?;
            sqlx::query("SELECT 1").execute(&mut c).await?;
            c.close().await
        };
        match tokio::time::timeout(Duration::from_secs(3), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if tokio::time::Instant::now() > deadline => {
                bail!("PostgreSQL at {} does not answer: {e}", redact(url))
            }
            _ if tokio::time::Instant::now() > deadline => {
                bail!("PostgreSQL at {} does not answer", redact(url))
            }
            _ => {}
        }
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("{name} exited during start-up ({status}); see its log above");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_redis(url: &str) -> anyhow::Result<()> {
    let redis = ecom_shared::redis::Redis::new(url, "ecomctl")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !redis.ping().await {
        if tokio::time::Instant::now() > deadline {
            bail!("Redis at {} does not answer", redact(url));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Creates each service's database on the server.
pub async fn create_databases(
    server_url: &str,
    names: &[String],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut urls = Vec::new();
    for name in names {
        let url =
            ecom_shared::config::with_database(server_url, name).map_err(|e| anyhow::anyhow!(e))?;
        ecom_shared::db::ensure_database(&url)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        urls.push((name.clone(), url));
    }
    Ok(urls)
}

/// Stops the private servers: PostgreSQL with a fast shutdown (SIGINT), Redis with SIGTERM.
pub async fn stop(infra: &mut Infra) {
    let children = std::mem::take(&mut infra.private);
    let stops = children.into_iter().rev().map(|(name, child)| {
        let signal = if name == "postgres" {
            nix::sys::signal::Signal::SIGINT
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        procs::stop(name, child, signal, Duration::from_secs(5))
    });
    futures::future::join_all(stops).await;
}
