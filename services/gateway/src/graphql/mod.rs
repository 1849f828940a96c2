//! `/graphql`: the contract's schema over the services' gRPC APIs.
//!
//! Per request: the caller's identity (verified once at the edge, the token forwarded to the
//! services, which verify it again) and DataLoaders, so `OrderItem.product` and
//! `Order.payment` cost one batched call each however many orders and items a query names.
//! Before anything runs: a body limit, a parse, a cap on the number of fields (aliases
//! included), at most one account mutation (`register`, `login`, `refreshToken`) per request,
//! then async-graphql's depth and complexity limits. Anonymous catalogue queries
//! are answered from a cache keyed by the catalogue's version (every product write bumps it),
//! so a write is never followed by a stale answer.
//!
//! Here: the schema and what one execution gets (the [`Viewer`], the DataLoaders). Around it:
//! `http` (the transport: the handler and the HTTP status of an answer), `analysis` (the limits
//! checked before running, cacheability, cache keys), `response_cache` (the shared single-flight
//! cache of anonymous catalogue answers).

mod analysis;
mod http;
mod loaders;
mod mutation;
mod query;
mod response_cache;
pub mod types;

use std::{net::IpAddr, sync::Arc};

use async_graphql::{EmptySubscription, Schema, dataloader::DataLoader};
use ecom_shared::auth::CurrentUser;

pub use self::{
    analysis::AUTH_MUTATIONS,
    http::{console, handler},
    loaders::*,
    mutation::Mutation,
    query::Query,
    response_cache::KnownQueries,
};
use crate::{Gateway, error::GatewayError, limits::Identity};

pub type GatewaySchema = Schema<Query, Mutation, EmptySubscription>;

/// A gRPC request carrying `token` (when there is one) as its bearer.
fn authorized<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let request = tonic::Request::new(message);
    match token {
        Some(t) => ecom_shared::auth::with_bearer(request, t),
        None => request,
    }
}

/// The caller of one GraphQL request.
pub struct Viewer {
    pub ip: IpAddr,
    pub token: Option<String>,
    pub user: Option<Result<CurrentUser, GatewayError>>,
}

impl From<Option<Identity>> for Viewer {
    /// The caller as the edge identified it (anonymous, from 0.0.0.0, without one).
    fn from(identity: Option<Identity>) -> Self {
        match identity {
            Some(Identity { ip, token, user }) => Self { ip, token, user },
            None => Self {
                ip: IpAddr::from([0, 0, 0, 0]),
                token: None,
                user: None,
            },
        }
    }
}

impl Viewer {
    /// A gRPC request carrying the caller's token (if any).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        authorized(message, self.token.as_deref())
    }

    /// The signed-in user, or the reason there is none.
    pub fn user(&self) -> Result<CurrentUser, GatewayError> {
        match &self.user {
            Some(Ok(user)) => Ok(*user),
            Some(Err(e)) => Err(e.clone()),
            None => Err(GatewayError::unauthenticated()),
        }
    }
}

pub fn build_schema(gw: Arc<Gateway>) -> GatewaySchema {
    let config = &gw.config;
    let mut builder = Schema::build(Query, Mutation, EmptySubscription)
        .limit_depth(config.graphql_max_depth)
        .limit_complexity(config.graphql_max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(8);
    if config.common.env.is_production() {
        builder = builder.disable_introspection();
    }
    builder.data(gw).finish()
}

/// The schema in SDL (for docs and tests).
pub fn sdl() -> String {
    Schema::build(Query, Mutation, EmptySubscription)
        .finish()
        .sdl()
}

/// Runs one request with its own DataLoaders, as `viewer`.
async fn execute(
    schema: &GatewaySchema,
    gw: &Arc<Gateway>,
    request: async_graphql::Request,
    viewer: Viewer,
) -> async_graphql::Response {
    let token = viewer.token.clone();
    let request = request
        .data(DataLoader::new(
            ProductLoader::new(gw.clone(), token.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            PaymentLoader::new(gw.clone(), token),
            tokio::spawn,
        ))
        .data(viewer);
    schema.execute(request).await
}
