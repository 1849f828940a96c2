//! `payments`: run the service; `payments migrate` applies its migrations and exits; `payments healthcheck`
//! asks the running service's `/health/ready` (container and Kubernetes probes); `payments --version`.

ecom_shared::service_main!(payments);
