//! Black-box tests of the Products service: a real server on real sockets (HTTP and gRPC), a
//! fresh PostgreSQL database per test, real Redis.

mod cache;
mod catalogue;
mod grpc_catalogue;
mod helpers;
mod openapi;
mod stock;
