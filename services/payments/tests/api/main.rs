//! Black-box tests of the Payments service with real Products and Orders services on real gRPC,
//! each on its own fresh PostgreSQL database, real Redis, and (for crashes) real processes.

mod crash;
mod grpc_pay;
mod helpers;
mod idempotency;
mod openapi;
mod outbox;
mod pay;
mod refunds;
mod soak;
