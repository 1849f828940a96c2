//! Each backend service's PostgreSQL database, by provider: a StatefulSet and headless Service
//! (Builtin, with generated credentials), a CloudNativePG `Cluster`, or nothing (External).

use std::collections::BTreeMap;

use ecom_shop_api::DatabaseProvider;
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            Container, ContainerPort, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
            PodTemplateSpec, Secret, Service, ServicePort, ServiceSpec, VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, util::intstr::IntOrString,
    },
};
use serde_json::json;

use super::{
    Desired, Discovery,
    meta::{Ctx, typed, untyped},
    pod,
};

pub const PORT: i32 = 5432;
/// The PostgreSQL image's `postgres` user and group (Debian images).
const POSTGRES_UID: i64 = 999;

/// The database's objects' name: `<shop>-<service>-db`.
pub fn name(ctx: &Ctx<'_>, service: &str) -> String {
    ctx.stateful_child(&format!("{service}-db"))
}

pub fn app(service: &str) -> String {
    format!("ecom-{service}-db")
}

/// The database (and user) of a service: `ecom_<service>`.
pub fn database(service: &str) -> String {
    format!("ecom_{service}")
}

/// The Secret whose `uri` key is the service's `ECOM_<SERVICE>_DATABASE_URL`.
pub fn url_secret(ctx: &Ctx<'_>, service: &str) -> String {
    let spec = &ctx.shop.spec.database;
    match spec.provider {
        DatabaseProvider::Builtin => name(ctx, service),
        // CloudNativePG's secret for the `initdb` owner.
        DatabaseProvider::CloudNativePG => format!("{}-app", name(ctx, service)),
        DatabaseProvider::External => spec
            .external
            .as_ref()
            .and_then(|e| e.secret_refs.get(service))
            .cloned()
            // The CRD insists on all four; should one be missing, the pods wait for a Secret
            // with a name the user can see (and create).
            .unwrap_or_else(|| name(ctx, service)),
    }
}

/// The objects of one service's database (none for External, none for CloudNativePG when it
/// is not installed: the controller reports that).
pub fn objects(ctx: &Ctx<'_>, service: &str, discovery: &Discovery) -> Vec<Desired> {
    match ctx.shop.spec.database.provider {
        DatabaseProvider::Builtin => vec![
            typed(&headless_service(ctx, service)),
            typed(&stateful_set(ctx, service)),
        ],
        DatabaseProvider::CloudNativePG if discovery.cnpg => vec![cluster(ctx, service)],
        DatabaseProvider::CloudNativePG | DatabaseProvider::External => Vec::new(),
    }
}

fn headless_service(ctx: &Ctx<'_>, service: &str) -> Service {
    let app = app(service);
    Service {
        metadata: ctx.meta(&name(ctx, service), &app, "database"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(ctx.selector("database", Some(&app))),
            ports: Some(vec![ServicePort {
                name: Some("postgres".to_owned()),
                port: PORT,
                protocol: Some("TCP".to_owned()),
                target_port: Some(IntOrString::String("postgres".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn stateful_set(ctx: &Ctx<'_>, service: &str) -> StatefulSet {
    let spec = &ctx.shop.spec.database;
    let name = name(ctx, service);
    let app = app(service);
    let credentials = name.clone();
    let container = Container {
        name: "postgres".to_owned(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| format!("postgres:{}", spec.postgres_version)),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".to_owned()),
            container_port: PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: Some(vec![
            pod::secret_env("POSTGRES_USER", &credentials, "username"),
            pod::secret_env("POSTGRES_PASSWORD", &credentials, "password"),
            pod::secret_env("POSTGRES_DB", &credentials, "dbname"),
            // A subdirectory: the volume's root may hold `lost+found`, which initdb refuses.
            pod::value_env("PGDATA", "/var/lib/postgresql/data/pgdata"),
        ]),
        readiness_probe: Some(pod::exec_probe(
            &[
                "sh",
                "-c",
                "pg_isready -h 127.0.0.1 -p 5432 -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\"",
            ],
            0,
            5,
            3,
        )),
        liveness_probe: Some(pod::exec_probe(
            &[
                "sh",
                "-c",
                "pg_isready -h 127.0.0.1 -p 5432 -U \"$POSTGRES_USER\"",
            ],
            30,
            10,
            6,
        )),
        resources: Some(pod::resources(("100m", "256Mi"), ("1", "1Gi"))),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![
            pod::mount("data", "/var/lib/postgresql/data"),
            pod::mount("run", "/var/run/postgresql"),
            pod::mount("tmp", "/tmp"),
        ]),
        ..Container::default()
    };
    StatefulSet {
        metadata: ctx.meta(&name, &app, "database"),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: ctx.label_selector("database", Some(&app)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.pod_labels(&app, "database", false)),
                    annotations: ctx.annotations(),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    image_pull_secrets: ctx.image_pull_secrets(),
                    security_context: Some(pod::pod_security(
                        ctx,
                        POSTGRES_UID,
                        POSTGRES_UID,
                        Some(POSTGRES_UID),
                    )),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    volumes: Some(vec![pod::empty_dir("run"), pod::empty_dir("tmp")]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![volume_claim(ctx, &app, "database", &spec.storage)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The `data` volume claim template of a StatefulSet. Only labels that never change: a
/// StatefulSet's claim templates are immutable. The controller deletes these claims (by
/// instance and managed-by) when the Shop goes, unless `retainOnDelete`.
pub fn volume_claim(
    ctx: &Ctx<'_>,
    app: &str,
    component: &str,
    storage: &ecom_shop_api::StorageSpec,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(ctx.stable_labels(app, component)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                limits: None,
            }),
            storage_class_name: storage.storage_class_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// A CloudNativePG `Cluster` (`postgresql.cnpg.io/v1`): its operator creates the database,
/// its owner and the `<cluster>-app` Secret (with `uri`).
fn cluster(ctx: &Ctx<'_>, service: &str) -> Desired {
    let spec = &ctx.shop.spec.database;
    let db = database(service);
    let mut storage = json!({ "size": spec.storage.size });
    if let Some(class) = &spec.storage.storage_class_name {
        storage["storageClass"] = json!(class);
    }
    untyped(
        "postgresql.cnpg.io/v1",
        "Cluster",
        &ctx.meta(&name(ctx, service), &app(service), "database"),
        json!({
            "instances": spec.instances.unwrap_or(1),
            "imageName": spec.image.clone().unwrap_or_else(|| format!("ghcr.io/cloudnative-pg/postgresql:{}", spec.postgres_version)),
            "storage": storage,
            "bootstrap": { "initdb": { "database": db, "owner": db } },
        }),
    )
}

/// The credentials Secret of a Builtin database: `username`, `password`, `host`, `port`,
/// `dbname`, `uri`.
pub fn credentials(ctx: &Ctx<'_>, service: &str, password: &str) -> Secret {
    let name = name(ctx, service);
    let db = database(service);
    let uri = format!(
        "postgres://{db}:{}@{name}:{PORT}/{db}",
        percent_encode(password)
    );
    let data = [
        ("username", db.as_str()),
        ("password", password),
        ("host", name.as_str()),
        ("port", &PORT.to_string()),
        ("dbname", db.as_str()),
        ("uri", uri.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ctx.meta(&name, &app(service), "database"),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for a URI's userinfo).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_escaped_in_the_uri() {
        assert_eq!(super::percent_encode("aZ9-._~"), "aZ9-._~");
        assert_eq!(super::percent_encode("a@b:c/d%"), "a%40b%3Ac%2Fd%25");
    }
}
