//! `operator crd`: print the `Shop` CustomResourceDefinition (YAML).
//! `operator run`: the controller, with leader election, `/metrics` and `/health`.
//! `operator --version`: the version.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use ecom_shop_api::Shop;
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    coordination::v1::Lease,
    core::v1::{ConfigMap, Secret, Service},
    networking::v1::{Ingress, NetworkPolicy},
};
use kube::{
    Api, Client, CustomResourceExt,
    runtime::{
        Controller,
        events::{Recorder, Reporter},
        watcher,
    },
};
use operator::{
    FIELD_MANAGER,
    controller::{self, Context, Metrics},
    leader::{self, Elector},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("crd") => {
            print!("{}", serde_norway::to_string(&Shop::crd())?);
            Ok(())
        }
        Some("run") => run().await,
        Some("--version" | "-V" | "version") => {
            println!("operator {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => anyhow::bail!("usage: operator crd | operator run | operator --version"),
    }
}

fn env(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// `operator run`'s settings, from the environment.
struct Settings {
    port: u16,
    namespace: String,
    identity: String,
    leader_election: bool,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            port: env("ECOM_OPERATOR_PORT", "8080").parse()?,
            namespace: env("POD_NAMESPACE", "ecom-system"),
            identity: env("POD_NAME", &format!("ecom-operator-{}", std::process::id())),
            leader_election: env("ECOM_OPERATOR_LEADER_ELECTION", "true") == "true",
        })
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ECOM_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let settings = Settings::from_env()?;
    let shutdown = shutdown_on_signal();
    let metrics = Arc::new(Metrics::default());
    let server = serve(settings.port, metrics.clone(), shutdown.clone()).await?;
    let client = Client::try_default().await?;
    let leadership = if settings.leader_election {
        match Leadership::acquire(&client, &settings, &shutdown).await {
            Some(leadership) => Some(leadership),
            // Shut down while waiting.
            None => return Ok(()),
        }
    } else {
        None
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        recorder(&client, &settings.identity),
        metrics,
        Arc::new(controller::random_secret),
    ));
    run_controller(&client, ctx, &shutdown).await;
    shutdown.cancel();
    if let Some(leadership) = leadership {
        leadership.step_down().await;
    }
    server.await??;
    tracing::info!("operator stopped");
    Ok(())
}

/// A token cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        cancel.cancel();
    });
    shutdown
}

/// `/health` and `/metrics` on `port`, until the shutdown.
async fn serve(
    port: u16,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<std::io::Result<()>>> {
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }))
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &metrics.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Leadership: wait for the lease (errors logged), then renew it in the background; losing it
/// stops the controller (the process exits and is restarted to wait again); a shutdown releases
/// it so the next replica takes over at once.
struct Leadership {
    elector: Arc<Elector>,
    /// Renews the lease; `false` once it is lost.
    keeper: JoinHandle<bool>,
}

impl Leadership {
    /// Waits for the lease; `None` when shut down first.
    async fn acquire(
        client: &Client,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Option<Self> {
        let identity = &settings.identity;
        let elector = Arc::new(Elector::new(
            Api::<Lease>::namespaced(client.clone(), &settings.namespace),
            "ecom-operator",
            identity,
            Duration::from_secs(15),
        ));
        tracing::info!(identity, "waiting for leadership");
        if !elector.acquire(leader::RETRY, shutdown).await {
            return None;
        }
        tracing::info!(identity, "leading");
        let (keeper, stop) = (elector.clone(), shutdown.clone());
        let keeper = tokio::spawn(async move {
            if let Err(why) = keeper.keep(leader::RETRY, &stop).await {
                tracing::error!(why, "leadership lost: stopping");
                stop.cancel();
                return false;
            }
            true
        });
        Some(Self { elector, keeper })
    }

    /// Still the leader (stopped by a signal, not by a loss): hands the lease over.
    async fn step_down(self) {
        if self.keeper.await.unwrap_or(false) {
            match self.elector.release().await {
                Ok(()) => tracing::info!("lease released"),
                Err(e) => tracing::warn!(error = %e, "cannot release the lease"),
            }
        }
    }
}

/// The Recorder of the controller's Events.
fn recorder(client: &Client, identity: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.to_owned()),
        },
    )
}

/// The controller: Shops, and the objects they own (by the managed-by label), until the
/// shutdown.
async fn run_controller(client: &Client, ctx: Arc<Context>, shutdown: &CancellationToken) {
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let shops = Api::<Shop>::all(client.clone());
    let stop = shutdown.clone();
    Controller::new(shops, watcher::Config::default().any_semantic())
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(Api::<Secret>::all(client.clone()), owned.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Ingress>::all(client.clone()), owned.clone())
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned)
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile outcome");
            }
        })
        .await;
}
