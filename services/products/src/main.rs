//! `products`: run the service; `products migrate` applies its migrations and exits; `products healthcheck`
//! asks the running service's `/health/ready` (container and Kubernetes probes); `products --version`.

ecom_shared::service_main!(products);
