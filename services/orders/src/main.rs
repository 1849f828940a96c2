//! `orders`: run the service; `orders migrate` applies its migrations and exits; `orders healthcheck`
//! asks the running service's `/health/ready` (container and Kubernetes probes); `orders --version`.

ecom_shared::service_main!(orders);
