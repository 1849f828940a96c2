//! Black-box tests of the Users service: a real server on a socket (HTTP and gRPC), a fresh
//! PostgreSQL database per test, real Redis.

mod admin;
mod amplification;
mod auth;
mod grpc;
mod grpc_accounts;
mod helpers;
mod jwt;
mod openapi;
mod platform;
