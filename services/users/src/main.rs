//! `users`: run the service; `users migrate` applies its migrations and exits; `users healthcheck`
//! asks the running service's `/health/ready` (container and Kubernetes probes); `users --version`.

ecom_shared::service_main!(users);
