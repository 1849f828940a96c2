//! The PostgreSQL pool and database bootstrap shared by every service.

use std::time::Duration;

use sqlx::{
    ConnectOptions, Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// Longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Connects a pool, retrying while the server starts: up to `wait`
/// (`ECOM_DATABASE_WAIT_SECONDS`), with exponential backoff from 250 ms to 8 s, saying so in the
/// log at every attempt. A first boot on Kubernetes starts the services and their databases
/// together: giving up early only turns a slow database start into a crash loop.
pub async fn connect(url: &str, max_connections: u32, wait: Duration) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.log_statements(tracing::log::LevelFilter::Trace);
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 1u32;
    loop {
        let result = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(3))
            // No ping before every use (a round trip per query); a broken connection fails its
            // query, which is reported as unavailable and retried by the caller.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await;
        let now = tokio::time::Instant::now();
        match result {
            Ok(pool) => {
                if attempt > 1 {
                    tracing::info!(
                        attempt,
                        waited_ms = u64::try_from((now - started).as_millis()).unwrap_or(u64::MAX),
                        "PostgreSQL is reachable"
                    );
                }
                return Ok(pool);
            }
            Err(e) if now < deadline => {
                let pause = backoff.min(deadline - now);
                tracing::warn!(
                    error = %e,
                    attempt,
                    retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                    gives_up_in_s = (deadline - now).as_secs(),
                    "the database (PostgreSQL) is not reachable yet; waiting for it (ECOM_DATABASE_WAIT_SECONDS)"
                );
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot connect to PostgreSQL (gave up after {} attempts in {} s)",
                    attempt,
                    (now - started).as_secs()
                )));
            }
        }
    }
}

/// Creates the database named in `url` when it does not exist (connecting to `postgres`).
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let options: PgConnectOptions = url.parse()?;
    let name = options
        .get_database()
        .ok_or_else(|| anyhow::anyhow!("the database URL names no database"))?
        .to_owned();
    let mut conn = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Identifiers cannot be bound; quote it (doubling quotes) instead.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut conn)
            .await
        {
            // A concurrent creator won the race: that is fine.
            let duplicate = e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "42P04");
            if !duplicate {
                return Err(e.into());
            }
        }
    }
    conn.close().await?;
    Ok(())
}

/// `SELECT 1`, bounded by a timeout: the readiness probe's database check.
pub async fn ping(pool: &PgPool) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(pool)
        )
        .await,
        Ok(Ok(_))
    )
}

/// `<service> migrate`: creates the database when missing and applies the migrations.
pub async fn migrate(url: &str, migrator: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
    ensure_database(url).await?;
    let pool = connect(url, 2, Duration::from_secs(30)).await?;
    migrator.run(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Whether a database error means "the database cannot be reached" (answer 503 and retry later)
/// rather than a bug (answer an opaque 500).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    let down = matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed
    );
    if down {
        tracing::warn!(error = %e, "database unavailable");
    }
    down
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that comes up after the service started is waited for, not given up on: the
    /// pool connects once the server answers (a real PostgreSQL behind a port that opens late).
    #[tokio::test]
    async fn a_database_that_starts_late_is_waited_for() {
        let Ok(server) = std::env::var("ECOM_TEST_DATABASE_URL") else {
            panic!(
                "ECOM_TEST_DATABASE_URL is not set: run through `ecomctl with-infra` (make test)"
            );
        };
        let server: PgConnectOptions = server.parse().expect("url");
        let upstream = format!("{}:{}", server.get_host(), server.get_port());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        // Nothing listens on `port` for the first second; then it forwards to PostgreSQL.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("late bind");
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut db) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut db).await;
                    }
                });
            }
        });
        let url = format!(
            "postgres://{}@127.0.0.1:{port}/postgres",
            server.get_username()
        );
        let pool = connect(&url, 1, Duration::from_secs(30))
            .await
            .expect("connects once the server is up");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .expect("query");
        assert_eq!(one, 1);

        // Nothing ever answers: an error naming the wait, after it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let started = std::time::Instant::now();
        let err = connect(
            &format!("postgres://postgres@127.0.0.1:{closed}/postgres"),
            1,
            Duration::from_secs(1),
        )
        .await
        .expect_err("nothing listens");
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert!(err.to_string().contains("gave up after"), "{err}");
    }
}
