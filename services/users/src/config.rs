//! The Users service's configuration: the shared settings plus its own.

use std::time::Duration;

use ecom_shared::{
    config::{CommonConfig, EnvReader, Rate, SERVICES_WITH_IDENTITY, Secret, read_service_secret},
    platform::{self, Service},
};

/// This service's row of the platform's table (its default ports).
pub const SERVICE: &Service = &platform::USERS;

/// The development defaults from the contract; refused in production.
pub const DEV_ADMIN_EMAIL: &str = "admin@example.com";
pub const DEV_ADMIN_PASSWORD: &str = "admin12345";

#[derive(Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub admin_email: String,
    pub admin_password: String,
    pub login_rate: Rate,
    /// Registrations per client IP (`ECOM_RATE_LIMIT_REGISTER`): each costs a password hash.
    pub register_rate: Rate,
    /// Password hashes that may run at once (`ECOM_HASHER_CONCURRENCY`).
    pub hasher_concurrency: usize,
    /// Password hashes that may wait for a free slot (`ECOM_HASHER_QUEUE`); beyond it a login,
    /// registration or password change is refused at once with 503.
    pub hasher_queue: usize,
    pub refresh_token_ttl: Duration,
    /// A signing key older than this is replaced by a new one (the old one keeps verifying).
    pub key_rotation_interval: Duration,
    /// Each service that calls others as itself, with the credential that obtains its service
    /// token (`ECOM_SERVICE_SECRET_<SERVICE>`): a credential mints its own service's name only.
    pub service_credentials: Vec<(&'static str, Secret)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("common", &self.common)
            .field("admin_email", &self.admin_email)
            .field("admin_password", &"***")
            .field("login_rate", &self.login_rate)
            .field("register_rate", &self.register_rate)
            .field("hasher_concurrency", &self.hasher_concurrency)
            .field("hasher_queue", &self.hasher_queue)
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(EnvReader::from_process())
    }

    pub fn read(mut env: EnvReader) -> anyhow::Result<Self> {
        let common = CommonConfig::read(SERVICE, &mut env);
        let admin_email = env.string("ECOM_ADMIN_EMAIL", DEV_ADMIN_EMAIL);
        let admin_password = env.string("ECOM_ADMIN_PASSWORD", DEV_ADMIN_PASSWORD);
        let login_rate = env.parse("ECOM_RATE_LIMIT_LOGIN", Rate::per_minute(10));
        let register_rate = env.parse("ECOM_RATE_LIMIT_REGISTER", Rate::per_hour(20));
        // Argon2id is CPU-bound: twice the cores keeps them busy; the queue bounds how long a
        // request can wait for one (about queue / throughput, well under a second by default).
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let hasher_concurrency: usize = env.parse("ECOM_HASHER_CONCURRENCY", cores * 2);
        let hasher_queue: usize = env.parse("ECOM_HASHER_QUEUE", hasher_concurrency * 8);
        if hasher_concurrency == 0 {
            env.error("ECOM_HASHER_CONCURRENCY must be at least 1");
        }
        let refresh_days: u64 = env.parse("ECOM_REFRESH_TOKEN_TTL_DAYS", 30);
        let rotation_days: u64 = env.parse("ECOM_JWT_KEY_ROTATION_DAYS", 30);
        if refresh_days == 0 || rotation_days == 0 {
            env.error(
                "ECOM_REFRESH_TOKEN_TTL_DAYS and ECOM_JWT_KEY_ROTATION_DAYS must be at least 1",
            );
        }
        if common.env.is_production() {
            if admin_password == DEV_ADMIN_PASSWORD {
                env.error("ECOM_ADMIN_PASSWORD must be set to a non-default secret when ECOM_ENV=production");
            }
            if admin_password.chars().count() < 12 {
                env.error("ECOM_ADMIN_PASSWORD must be at least 12 characters in production");
            }
        }
        let service_credentials: Vec<(&'static str, Secret)> = SERVICES_WITH_IDENTITY
            .iter()
            .map(|&name| {
                let key = format!("ECOM_SERVICE_SECRET_{}", name.to_ascii_uppercase());
                (name, read_service_secret(&mut env, &key, name, common.env))
            })
            .collect();
        for (i, (a, secret)) in service_credentials.iter().enumerate() {
            if let Some((b, _)) = service_credentials[i + 1..]
                .iter()
                .find(|(_, other)| other == secret)
            {
                env.error(format!(
                    "the service credentials of {a} and {b} must differ (ECOM_SERVICE_SECRET_*)"
                ));
            }
        }
        if crate::domain::Email::parse(&admin_email).is_err() {
            env.error("ECOM_ADMIN_EMAIL is not an e-mail address");
        }
        if crate::domain::Password::parse_new(&admin_password).is_err() {
            env.error("ECOM_ADMIN_PASSWORD must be at least 8 characters");
        }
        env.finish()?;
        Ok(Self {
            common,
            admin_email,
            admin_password,
            login_rate,
            register_rate,
            hasher_concurrency,
            hasher_queue,
            refresh_token_ttl: Duration::from_secs(refresh_days * 86_400),
            key_rotation_interval: Duration::from_secs(rotation_days * 86_400),
            service_credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        Config::read(EnvReader::from_map(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        ))
    }

    #[test]
    fn production_refuses_development_secrets() {
        let err = read(&[("ECOM_ENV", "production")]).expect_err("dev password in production");
        assert!(err.to_string().contains("ECOM_ADMIN_PASSWORD"));
        assert!(
            err.to_string().contains("ECOM_SERVICE_SECRET_ORDERS"),
            "{err}"
        );
        assert!(
            err.to_string().contains("ECOM_SERVICE_SECRET_PAYMENTS"),
            "{err}"
        );
        let production = [
            ("ECOM_ENV", "production"),
            ("ECOM_ADMIN_PASSWORD", "a-long-real-secret"),
            (
                "ECOM_SERVICE_SECRET_ORDERS",
                "orders-0123456789abcdef0123456789",
            ),
            (
                "ECOM_SERVICE_SECRET_PAYMENTS",
                "payments-0123456789abcdef01234567",
            ),
        ];
        let c = read(&production).expect("production with its own secrets");
        let names: Vec<_> = c.service_credentials.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["orders", "payments"]);
        assert!(read(&[]).is_ok(), "development accepts the defaults");
    }

    #[test]
    fn each_calling_service_has_its_own_credential() {
        let c = read(&[]).expect("defaults");
        let (orders, payments) = (&c.service_credentials[0].1, &c.service_credentials[1].1);
        assert_ne!(orders, payments, "development defaults differ per service");
        let err = read(&[
            (
                "ECOM_SERVICE_SECRET_ORDERS",
                "the-same-secret-for-two-services-x",
            ),
            (
                "ECOM_SERVICE_SECRET_PAYMENTS",
                "the-same-secret-for-two-services-x",
            ),
        ])
        .expect_err("one secret for two services");
        assert!(err.to_string().contains("must differ"), "{err}");
    }

    #[test]
    fn registration_and_hasher_limits_have_defaults_and_are_checked() {
        let c = read(&[]).expect("defaults");
        assert_eq!(c.register_rate, Rate::per_hour(20));
        assert!(c.hasher_concurrency >= 1);
        assert_eq!(c.hasher_queue, c.hasher_concurrency * 8);
        let c = read(&[
            ("ECOM_RATE_LIMIT_REGISTER", "5/minute"),
            ("ECOM_HASHER_CONCURRENCY", "1"),
            ("ECOM_HASHER_QUEUE", "0"),
        ])
        .expect("overrides");
        assert_eq!(c.register_rate, Rate::per_minute(5));
        assert_eq!((c.hasher_concurrency, c.hasher_queue), (1, 0));
        let err = read(&[
            ("ECOM_HASHER_CONCURRENCY", "0"),
            ("ECOM_RATE_LIMIT_REGISTER", "x"),
        ])
        .expect_err("invalid");
        assert!(err.to_string().contains("ECOM_HASHER_CONCURRENCY"), "{err}");
        assert!(
            err.to_string().contains("ECOM_RATE_LIMIT_REGISTER"),
            "{err}"
        );
    }

    #[test]
    fn debug_output_hides_the_admin_password() {
        let c = read(&[]).expect("defaults");
        assert!(!format!("{c:?}").contains(DEV_ADMIN_PASSWORD));
        assert!(!format!("{c:?}").contains(ecom_shared::config::DEV_SERVICE_SECRET));
    }
}
