//! Typed configuration from `ECOM_*` environment variables, validated once at start.
//!
//! Every problem is collected and reported together, so a misconfigured deployment fails with
//! one readable message instead of one restart per mistake.

use std::{collections::HashMap, fmt, net::IpAddr, str::FromStr, time::Duration};

use crate::platform::{Service, USERS};

/// Where the process runs. Production refuses development secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!(
                "unknown environment `{other}` (development|test|production)"
            )),
        }
    }
}

/// A rate written `N/second|minute|hour` (the contract's syntax), e.g. `10/minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    pub const fn per_minute(count: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(60),
        }
    }

    pub const fn per_hour(count: u32) -> Self {
        Self {
            count,
            period: Duration::from_secs(3600),
        }
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("rate `{s}` must look like `10/minute`"))?;
        let count: u32 = n
            .trim()
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("rate `{s}`: `{n}` is not a positive integer"))?;
        let period = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" | "seconds" => Duration::from_secs(1),
            "m" | "min" | "minute" | "minutes" => Duration::from_secs(60),
            "h" | "hour" | "hours" => Duration::from_secs(3600),
            other => {
                return Err(format!(
                    "rate `{s}`: unit `{other}` is not second|minute|hour"
                ));
            }
        };
        Ok(Self { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "second",
            60 => "minute",
            3600 => "hour",
            _ => "period",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Reads `ECOM_*` variables from a map (the process environment, or a test's own map) and
/// collects every error instead of stopping at the first.
pub struct EnvReader {
    vars: HashMap<String, String>,
    errors: Vec<String>,
}

impl EnvReader {
    pub fn from_process() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            errors: Vec::new(),
        }
    }

    /// The raw value, treating an empty string as unset.
    pub fn raw(&self, key: &str) -> Option<String> {
        self.vars
            .get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or_else(|| default.to_owned())
    }

    pub fn parse<T>(&mut self, key: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(key) {
            None => default,
            Some(v) => match v.parse() {
                Ok(t) => t,
                Err(e) => {
                    self.errors.push(format!("{key}={v:?}: {e}"));
                    default
                }
            },
        }
    }

    pub fn error(&mut self, msg: impl Into<String>) {
        self.errors.push(msg.into());
    }

    /// Fails with every collected problem, one per line.
    pub fn finish(self) -> anyhow::Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid configuration:\n  - {}", self.errors.join("\n  - "))
        }
    }
}

/// Settings every service has, read the same way everywhere.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub service: &'static str,
    /// The service's row of the platform's table (default ports, gRPC service name).
    pub platform: &'static Service,
    pub env: Environment,
    pub bind: IpAddr,
    pub http_port: u16,
    pub grpc_port: u16,
    pub database_url: String,
    pub redis_url: String,
    /// Prefix of every Redis key this process writes (lets tests and tenants share a server).
    pub redis_prefix: String,
    /// Where the Users service publishes its public keys.
    pub jwks_url: String,
    /// Peers' addresses in `X-Forwarded-For` are trusted only from these proxies.
    pub trusted_proxies: Vec<crate::http::IpRange>,
    pub access_token_ttl: Duration,
    pub run_migrations: bool,
    /// The Users gRPC server (service tokens, users).
    pub users_grpc_url: String,
    /// This service's own credential for obtaining its service token from Users
    /// (`ECOM_SERVICE_SECRET`): only for the services that call others as themselves
    /// ([`SERVICES_WITH_IDENTITY`]), `None` for the rest. Refused in production when left at
    /// the development default.
    pub service_secret: Option<Secret>,
    /// What a slow or idle client may hold of an HTTP server.
    pub http_limits: HttpLimits,
    /// The `aud` of the access tokens Users issues and every service accepts
    /// (`ECOM_JWT_AUDIENCE`): set the same on every service of one platform.
    pub jwt_audience: String,
    /// How long to wait for PostgreSQL at start before giving up (`ECOM_DATABASE_WAIT_SECONDS`).
    pub database_wait: Duration,
    /// Whether the gRPC server answers server reflection (`ECOM_GRPC_REFLECTION`; default on,
    /// off in production like the gateway's GraphQL introspection).
    pub grpc_reflection: bool,
    /// How often a gRPC client re-resolves a peer's host name to find its replicas
    /// (`ECOM_GRPC_RESOLVE_SECONDS`; see `grpc::channel`).
    pub grpc_resolve_every: Duration,
    /// Whether this process reads and keeps cached values (`ECOM_CACHE`, `on` or `off`; on by
    /// default). Off, every read goes to the source (Products' and Orders' database, the
    /// gateway's execution); writes still invalidate, so replicas with the cache on stay exact.
    pub cache: bool,
}

/// Bounds on HTTP clients: a client that sends its headers or its body slowly (slowloris) is
/// cut off, and the number of open connections is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to receive a request's headers (`ECOM_HTTP_HEADER_TIMEOUT_MS`).
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body (`ECOM_HTTP_BODY_TIMEOUT_MS`).
    pub body_timeout: Duration,
    /// Open connections at most; more wait in the listen queue (`ECOM_HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

impl HttpLimits {
    pub fn read(env: &mut EnvReader) -> Self {
        let d = Self::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let header: u64 = env.parse("ECOM_HTTP_HEADER_TIMEOUT_MS", ms(d.header_timeout));
        let body: u64 = env.parse("ECOM_HTTP_BODY_TIMEOUT_MS", ms(d.body_timeout));
        let max_connections = env.parse("ECOM_HTTP_MAX_CONNECTIONS", d.max_connections);
        for (key, value) in [
            ("ECOM_HTTP_HEADER_TIMEOUT_MS", header),
            ("ECOM_HTTP_BODY_TIMEOUT_MS", body),
        ] {
            if !(100..=600_000).contains(&value) {
                env.error(format!("{key} must be between 100 and 600000"));
            }
        }
        if max_connections == 0 {
            env.error("ECOM_HTTP_MAX_CONNECTIONS must be at least 1");
        }
        Self {
            header_timeout: Duration::from_millis(header),
            body_timeout: Duration::from_millis(body),
            max_connections,
        }
    }
}

/// The prefix of the development defaults of the service credentials; refused when
/// `ECOM_ENV=production`.
pub const DEV_SERVICE_SECRET: &str = "ecom-development-service-secret";

/// The services that call others as themselves (the Orders sweeper and stock calls, the
/// Payments outbox relay), each with its own credential: only these may obtain a service token,
/// and each only for its own name. The gateway, Products and Users never act as a service.
pub const SERVICES_WITH_IDENTITY: [&str; 2] = ["orders", "payments"];

/// The development default of `service`'s credential (public, refused in production).
pub fn dev_service_secret(service: &str) -> String {
    format!("{DEV_SERVICE_SECRET}-{service}")
}

/// Reads a service credential from `key`: the development default for `service` unless set; in
/// production it must be set, at least 32 characters long, and not a development default.
pub fn read_service_secret(
    env: &mut EnvReader,
    key: &str,
    service: &str,
    environment: Environment,
) -> Secret {
    let value = env.string(key, &dev_service_secret(service));
    if environment.is_production()
        && (value.starts_with(DEV_SERVICE_SECRET) || value.chars().count() < 32)
    {
        env.error(format!(
            "{key} must be set to a secret of at least 32 characters when ECOM_ENV=production"
        ));
    }
    Secret::new(value)
}

/// A secret setting: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl CommonConfig {
    /// Says loudly, once at start, when the process runs outside production: development
    /// accepts the public development secrets, which no deployment may rely on.
    pub fn announce_environment(&self) {
        if self.env.is_production() {
            return;
        }
        let secret = if self
            .service_secret
            .as_ref()
            .is_some_and(|s| s.expose().starts_with(DEV_SERVICE_SECRET))
        {
            "the public development ECOM_SERVICE_SECRET is in use"
        } else {
            "development defaults are accepted"
        };
        tracing::warn!(
            environment = ?self.env,
            "{} IS RUNNING IN {} MODE: {secret}; set ECOM_ENV=production for a deployment",
            self.service,
            format!("{:?}", self.env).to_uppercase()
        );
    }

    /// Reads the common settings of `service` (`ECOM_<SERVICE>_HTTP_PORT`, ...), its defaults
    /// from the platform's table.
    pub fn read(service: &'static Service, env: &mut EnvReader) -> Self {
        let prefix = service.env_prefix();
        let environment: Environment = env.parse("ECOM_ENV", Environment::Development);
        let bind = env.parse("ECOM_BIND_ADDRESS", IpAddr::from([0, 0, 0, 0]));
        let http_port = env.parse(&format!("{prefix}_HTTP_PORT"), service.http_port);
        let grpc_port = env.parse(
            &format!("{prefix}_GRPC_PORT"),
            service.grpc_port.unwrap_or(0),
        );
        let db_name = service.database_name();
        let database_url = match env.raw(&format!("{prefix}_DATABASE_URL")) {
            Some(url) => url,
            None => match env.raw("ECOM_DATABASE_URL") {
                Some(server) => match with_database(&server, &db_name) {
                    Ok(url) => url,
                    Err(e) => {
                        env.error(format!("ECOM_DATABASE_URL: {e}"));
                        String::new()
                    }
                },
                None => format!("postgres://postgres@127.0.0.1:5432/{db_name}"),
            },
        };
        let redis_url = env.string("ECOM_REDIS_URL", "redis://127.0.0.1:6379");
        let redis_prefix = env.string("ECOM_REDIS_PREFIX", "ecom");
        let jwks_url = env.string(
            "ECOM_JWKS_URL",
            &format!("{}/.well-known/jwks.json", USERS.local_http_url()),
        );
        let trusted_proxies = match env.raw("ECOM_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .filter_map(|s| match s.parse() {
                    Ok(range) => Some(range),
                    Err(e) => {
                        env.error(format!("ECOM_TRUSTED_PROXIES: {e}"));
                        None
                    }
                })
                .collect(),
        };
        let ttl: u64 = env.parse("ECOM_ACCESS_TOKEN_TTL_SECONDS", 900);
        if !(30..=86_400).contains(&ttl) {
            env.error("ECOM_ACCESS_TOKEN_TTL_SECONDS must be between 30 and 86400");
        }
        let run_migrations = env.parse("ECOM_MIGRATE", true);
        let users_grpc_url = env.string(
            "ECOM_USERS_GRPC_URL",
            &USERS.local_grpc_url().unwrap_or_default(),
        );
        if url::Url::parse(&users_grpc_url).is_err() {
            env.error("ECOM_USERS_GRPC_URL is not a URL");
        }
        let http_limits = HttpLimits::read(env);
        let database_wait: u64 = env.parse("ECOM_DATABASE_WAIT_SECONDS", 120);
        if database_wait > 3600 {
            env.error("ECOM_DATABASE_WAIT_SECONDS must be at most 3600");
        }
        let grpc_reflection = env.parse("ECOM_GRPC_REFLECTION", !environment.is_production());
        let grpc_resolve: u64 = env.parse(
            "ECOM_GRPC_RESOLVE_SECONDS",
            crate::grpc::DEFAULT_RESOLVE_EVERY.as_secs(),
        );
        if !(1..=3600).contains(&grpc_resolve) {
            env.error("ECOM_GRPC_RESOLVE_SECONDS must be between 1 and 3600");
        }
        let cache = match env.raw("ECOM_CACHE").map(|v| v.to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "on" | "true" | "1") => true,
            Some(v) if matches!(v.as_str(), "off" | "false" | "0") => false,
            Some(v) => {
                env.error(format!("ECOM_CACHE={v:?}: must be `on` or `off`"));
                true
            }
        };
        let jwt_audience = env.string("ECOM_JWT_AUDIENCE", crate::auth::DEFAULT_AUDIENCE);
        if jwt_audience.is_empty()
            || jwt_audience.len() > 128
            || !jwt_audience.bytes().all(|b| b.is_ascii_graphic())
        {
            env.error("ECOM_JWT_AUDIENCE must be 1 to 128 printable characters without spaces");
        }
        let service_secret = SERVICES_WITH_IDENTITY
            .contains(&service.name)
            .then(|| read_service_secret(env, "ECOM_SERVICE_SECRET", service.name, environment));
        Self {
            service: service.name,
            platform: service,
            env: environment,
            bind,
            http_port,
            grpc_port,
            database_url,
            redis_url,
            redis_prefix,
            jwks_url,
            trusted_proxies,
            access_token_ttl: Duration::from_secs(ttl),
            run_migrations,
            users_grpc_url,
            service_secret,
            http_limits,
            jwt_audience,
            grpc_reflection,
            grpc_resolve_every: Duration::from_secs(grpc_resolve),
            database_wait: Duration::from_secs(database_wait),
            cache,
        }
    }
}

/// Replaces the database name in a PostgreSQL URL: one server, one database per service.
pub fn with_database(server_url: &str, db_name: &str) -> Result<String, String> {
    let mut url = url::Url::parse(server_url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("scheme must be postgres://".into());
    }
    url.set_path(&format!("/{db_name}"));
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_the_contract_syntax() {
        assert_eq!("10/minute".parse::<Rate>(), Ok(Rate::per_minute(10)));
        assert_eq!(
            "5/second".parse::<Rate>().map(|r| r.period),
            Ok(Duration::from_secs(1))
        );
        assert_eq!("1200/hour".parse::<Rate>().map(|r| r.count), Ok(1200));
        assert!("0/minute".parse::<Rate>().is_err());
        assert!("ten/minute".parse::<Rate>().is_err());
        assert!("10/fortnight".parse::<Rate>().is_err());
        assert!("10".parse::<Rate>().is_err());
        assert_eq!(Rate::per_minute(10).to_string(), "10/minute");
    }

    #[test]
    fn database_name_is_replaced_per_service() {
        assert_eq!(
            with_database(
                "postgres://u:p@db:5432/postgres?sslmode=disable",
                "ecom_users"
            )
            .as_deref(),
            Ok("postgres://u:p@db:5432/ecom_users?sslmode=disable")
        );
        assert!(with_database("mysql://x/y", "a").is_err());
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let mut env = EnvReader::from_map(HashMap::from([
            ("ECOM_ENV".to_owned(), "staging".to_owned()),
            ("ECOM_USERS_HTTP_PORT".to_owned(), "http".to_owned()),
        ]));
        let _ = CommonConfig::read(&USERS, &mut env);
        let msg = env.finish().expect_err("must fail").to_string();
        assert!(msg.contains("ECOM_ENV"), "{msg}");
        assert!(msg.contains("ECOM_USERS_HTTP_PORT"), "{msg}");
    }

    /// The common settings of service `name` from `vars` alone, and whether they were valid.
    fn common(name: &'static str, vars: &[(&str, &str)]) -> anyhow::Result<CommonConfig> {
        let mut env = EnvReader::from_map(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let service = crate::platform::by_name(name).expect("a service of the platform");
        let c = CommonConfig::read(service, &mut env);
        env.finish().map(|()| c)
    }

    /// Only the services that call others as themselves hold a credential, each its own;
    /// production refuses the public development values.
    #[test]
    fn a_service_credential_is_read_by_the_services_with_an_identity_only() {
        let read = |name, vars: &[(&str, &str)]| common(name, vars).map(|c| c.service_secret);
        let orders = read("orders", &[]).expect("development default");
        assert_eq!(
            orders.map(|s| s.expose().to_owned()),
            Some(dev_service_secret("orders"))
        );
        assert_eq!(read("gateway", &[]).expect("none"), None);
        assert_eq!(read("products", &[]).expect("none"), None);
        let production = [("ECOM_ENV", "production")];
        let err = read("payments", &production).expect_err("development value");
        assert!(err.to_string().contains("ECOM_SERVICE_SECRET"), "{err}");
        assert!(
            read(
                "payments",
                &[
                    ("ECOM_ENV", "production"),
                    ("ECOM_SERVICE_SECRET", &dev_service_secret("payments"))
                ]
            )
            .is_err(),
            "the development value, set explicitly"
        );
        assert!(
            read(
                "payments",
                &[
                    ("ECOM_ENV", "production"),
                    ("ECOM_SERVICE_SECRET", &"p".repeat(32))
                ]
            )
            .is_ok()
        );
        // The gateway needs no credential in production.
        assert_eq!(
            read("gateway", &production).expect("no credential needed"),
            None
        );
    }

    #[test]
    fn grpc_reflection_is_on_by_default_and_off_by_default_in_production() {
        let reflection =
            |vars: &[(&str, &str)]| common("products", vars).expect("valid").grpc_reflection;
        assert!(reflection(&[]));
        assert!(!reflection(&[("ECOM_ENV", "production")]));
        assert!(reflection(&[
            ("ECOM_ENV", "production"),
            ("ECOM_GRPC_REFLECTION", "true")
        ]));
        assert!(!reflection(&[("ECOM_GRPC_REFLECTION", "false")]));
    }

    #[test]
    fn defaults_follow_the_contract() {
        let mut env = EnvReader::from_map(HashMap::new());
        let c = CommonConfig::read(&USERS, &mut env);
        env.finish().expect("defaults are valid");
        assert_eq!((c.http_port, c.grpc_port), (8001, 50051));
        assert_eq!(c.users_grpc_url, "http://127.0.0.1:50051");
        assert_eq!(c.jwks_url, "http://127.0.0.1:8001/.well-known/jwks.json");
        assert_eq!(c.env, Environment::Development);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert!(c.database_url.ends_with("/ecom_users"));
        assert_eq!(c.grpc_resolve_every, Duration::from_secs(10));
    }

    #[test]
    fn grpc_resolve_interval_is_bounded() {
        let every = |v| common("orders", &[("ECOM_GRPC_RESOLVE_SECONDS", v)]);
        assert_eq!(
            every("3").expect("valid").grpc_resolve_every,
            Duration::from_secs(3)
        );
        for bad in ["0", "3601", "soon"] {
            let err = every(bad).expect_err(bad);
            assert!(
                err.to_string().contains("ECOM_GRPC_RESOLVE_SECONDS"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_cache_is_on_unless_switched_off() {
        let cache = |v: Option<&str>| {
            let vars: Vec<(&str, &str)> = v.map(|v| ("ECOM_CACHE", v)).into_iter().collect();
            common("products", &vars).map(|c| c.cache)
        };
        assert!(cache(None).expect("default"));
        for on in ["on", "ON", "true", "1"] {
            assert!(cache(Some(on)).expect(on), "{on}");
        }
        for off in ["off", "Off", "false", "0"] {
            assert!(!cache(Some(off)).expect(off), "{off}");
        }
        let err = cache(Some("sometimes")).expect_err("not a switch");
        assert!(err.to_string().contains("ECOM_CACHE"), "{err}");
    }
}
