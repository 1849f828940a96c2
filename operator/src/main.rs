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

async fn metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
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

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ECOM_LOG")
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let port: u16 = env("ECOM_OPERATOR_PORT", "8080").parse()?;
    let namespace = env("POD_NAMESPACE", "ecom-system");
    let identity = env("POD_NAME", &format!("ecom-operator-{}", std::process::id()));
    let leader_election = env("ECOM_OPERATOR_LEADER_ELECTION", "true") == "true";

    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            shutdown.cancel();
        });
    }

    let metrics = Arc::new(Metrics::default());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .with_state(metrics.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await?;
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
    });

    let client = Client::try_default().await?;
    // Leadership: wait for the lease (errors logged), then renew it in the background; losing
    // it stops the controller (the process exits and is restarted to wait again); a shutdown
    // releases it so the next replica takes over at once.
    let mut leadership = None;
    if leader_election {
        let elector = Arc::new(Elector::new(
            Api::<Lease>::namespaced(client.clone(), &namespace),
            "ecom-operator",
            &identity,
            Duration::from_secs(15),
        ));
        tracing::info!(identity, "waiting for leadership");
        if !elector.acquire(leader::RETRY, &shutdown).await {
            return Ok(());
        }
        tracing::info!(identity, "leading");
        let (keeper, stop) = (elector.clone(), shutdown.clone());
        leadership = Some((
            elector,
            tokio::spawn(async move {
                if let Err(why) = keeper.keep(leader::RETRY, &stop).await {
                    tracing::error!(why, "leadership lost: stopping");
                    stop.cancel();
                    return false;
                }
                true
            }),
        ));
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.clone()),
        },
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        recorder,
        metrics,
        Arc::new(controller::random_secret),
    ));
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
    shutdown.cancel();
    if let Some((elector, keeper)) = leadership {
        // Still the leader (stopped by a signal, not by a loss): hand the lease over.
        if keeper.await.unwrap_or(false) {
            match elector.release().await {
                Ok(()) => tracing::info!("lease released"),
                Err(e) => tracing::warn!(error = %e, "cannot release the lease"),
            }
        }
    }
    server.await??;
    tracing::info!("operator stopped");
    Ok(())
}

async fn metrics_handler(state: State<Arc<Metrics>>) -> impl IntoResponse {
    metrics(state).await
}
