//! Black-box tests of the Orders service, with a real Products service on real gRPC, each on
//! its own fresh PostgreSQL database, and real Redis.

mod checkout;
mod grpc_orders;
mod helpers;
mod idempotency;
mod lifecycle;
mod openapi;
