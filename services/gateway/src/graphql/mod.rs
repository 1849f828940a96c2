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

mod loaders;
mod mutation;
mod query;
pub mod types;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, PoisonError},
};

use async_graphql::{
    EmptySubscription, Schema, ServerError,
    dataloader::DataLoader,
    parser::types::{
        DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType,
        Selection, SelectionSet,
    },
};
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use ecom_shared::auth::CurrentUser;
use sha2::{Digest, Sha256};

pub use self::{loaders::*, mutation::Mutation, query::Query};
use crate::{
    AppState, Gateway,
    error::{GatewayError, codes},
    limits::Identity,
};

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

/// A GraphQL error answer that never ran: `status`, one error with `code`.
fn refused(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{"message": message, "extensions": {"code": code}}],
    });
    (status, axum::Json(body)).into_response()
}

/// Counts the fields of `set` that `counts` accepts, fragments and inline fragments expanded
/// (a named fragment is walked once, then remembered in `memo`). `nested`: the fields below
/// each field count too; otherwise only this level does (root fields: mutations).
fn count_selected(
    set: &SelectionSet,
    doc: &ExecutableDocument,
    memo: &mut HashMap<String, usize>,
    depth: usize,
    counts: fn(&Field) -> bool,
    nested: bool,
) -> usize {
    if depth > 32 {
        // Only a fragment cycle nests this deep; validation refuses it, and so do we.
        return usize::MAX / 4;
    }
    let walk = |set: &SelectionSet, memo: &mut HashMap<String, usize>| {
        count_selected(set, doc, memo, depth + 1, counts, nested)
    };
    let mut n: usize = 0;
    for item in &set.items {
        n = n.saturating_add(match &item.node {
            Selection::Field(f) => {
                let below = if nested {
                    walk(&f.node.selection_set.node, memo)
                } else {
                    0
                };
                usize::from(counts(&f.node)).saturating_add(below)
            }
            Selection::InlineFragment(f) => walk(&f.node.selection_set.node, memo),
            Selection::FragmentSpread(s) => {
                let name = s.node.fragment_name.node.as_str();
                if let Some(n) = memo.get(name) {
                    *n
                } else {
                    let n = doc
                        .fragments
                        .get(name)
                        .map_or(0, |f| walk(&f.node.selection_set.node, memo));
                    memo.insert(name.to_owned(), n);
                    n
                }
            }
        });
    }
    n
}

/// How many fields a document selects (aliases count: they run again), fragments expanded.
fn count_fields(doc: &ExecutableDocument) -> usize {
    let mut memo = HashMap::new();
    let mut count = |set: &SelectionSet| count_selected(set, doc, &mut memo, 0, |_| true, true);
    match &doc.operations {
        DocumentOperations::Single(op) => count(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops
            .values()
            .map(|op| count(&op.node.selection_set.node))
            .fold(0, usize::saturating_add),
    }
}

/// Mutations that each cost a password hash (`register`, `login`) or a token rotation
/// (`refreshToken`). One request may run at most one: fifty aliased `login`s would otherwise cost
/// fifty Argon2 hashes for one unit of the client's budget.
pub const AUTH_MUTATIONS: [&str; 3] = ["register", "login", "refreshToken"];

/// How many [`AUTH_MUTATIONS`] the operation that would run selects: aliases count, fragments
/// and inline fragments are expanded, `@skip`/`@include` are ignored (counted as if they ran).
/// With several operations and no `operationName`, all of them are counted.
fn count_auth_mutations(doc: &ExecutableDocument, operation_name: Option<&str>) -> usize {
    fn is_auth(f: &Field) -> bool {
        AUTH_MUTATIONS.contains(&f.name.node.as_str())
    }
    let mut memo = HashMap::new();
    let mut count = |op: &OperationDefinition| {
        if op.ty == OperationType::Mutation {
            // Only root fields can be mutations: no need to look below them.
            count_selected(&op.selection_set.node, doc, &mut memo, 0, is_auth, false)
        } else {
            0
        }
    };
    match &doc.operations {
        DocumentOperations::Single(op) => count(&op.node),
        DocumentOperations::Multiple(ops) => ops
            .iter()
            .filter(|(name, _)| operation_name.is_none_or(|n| name.as_str() == n))
            .map(|(_, op)| count(&op.node))
            .fold(0, usize::saturating_add),
    }
}

/// Whether an anonymous answer to `doc` depends only on the catalogue: one query operation
/// whose root fields are all `products` / `product` / `__typename`.
fn catalogue_only(doc: &ExecutableDocument) -> bool {
    let DocumentOperations::Single(op) = &doc.operations else {
        return false;
    };
    op.node.ty == OperationType::Query
        && op.node.selection_set.node.items.iter().all(|item| {
            matches!(&item.node, Selection::Field(f)
                if matches!(f.node.name.node.as_str(), "products" | "product" | "__typename"))
        })
}

/// The HTTP status of an executed answer: 429 when a budget refused it, 503 when nothing could
/// be answered for a dependency down, 400 when it never ran (parse or validation errors, which
/// carry no code of ours), else 200.
fn status_of(response: &async_graphql::Response) -> (StatusCode, Option<u64>) {
    let code_of = |e: &ServerError| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .and_then(|v| match v {
                async_graphql::Value::String(s) => Some(s.clone()),
                _ => None,
            })
    };
    for e in &response.errors {
        if code_of(e).as_deref() == Some(codes::RATE_LIMITED) {
            let retry = e
                .extensions
                .as_ref()
                .and_then(|x| x.get("retryAfter"))
                .and_then(|v| match v {
                    async_graphql::Value::Number(n) => n.as_u64(),
                    _ => None,
                });
            return (StatusCode::TOO_MANY_REQUESTS, Some(retry.unwrap_or(1)));
        }
    }
    // Nothing answered because a service (or the login throttle) is down: 503, like REST.
    if response.data == async_graphql::Value::Null
        && response
            .errors
            .iter()
            .any(|e| code_of(e).as_deref() == Some(codes::SERVICE_UNAVAILABLE))
    {
        return (StatusCode::SERVICE_UNAVAILABLE, Some(5));
    }
    let never_ran = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| code_of(e).is_none());
    if never_ran {
        (StatusCode::BAD_REQUEST, None)
    } else {
        (StatusCode::OK, None)
    }
}

/// Labels errors that never ran with `BAD_USER_INPUT` (the client's query is at fault).
fn label_refusals(response: &mut async_graphql::Response) {
    for e in &mut response.errors {
        if e.extensions
            .as_ref()
            .is_none_or(|x| x.get("code").is_none())
        {
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", codes::BAD_USER_INPUT);
        }
    }
}

/// One executed request, ready to send.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Bytes,
    /// No errors at all: safe to keep in the response cache.
    clean: bool,
}

/// Runs one request.
async fn execute(
    schema: &GatewaySchema,
    gw: &Arc<Gateway>,
    request: async_graphql::Request,
    viewer: Viewer,
) -> Answer {
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
    let mut response = schema.execute(request).await;
    let (status, retry_after) = status_of(&response);
    if status == StatusCode::BAD_REQUEST {
        label_refusals(&mut response);
    }
    Answer {
        status,
        retry_after,
        clean: response.errors.is_empty(),
        body: Bytes::from(serde_json::to_vec(&response).unwrap_or_default()),
    }
}

fn respond(status: StatusCode, retry: Option<u64>, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Fingerprints of request bodies known to be anonymous-cacheable catalogue queries (already
/// parsed and checked once), each with its cache key ([`cache_key`]): their cache hits skip
/// parsing altogether.
#[derive(Default)]
pub struct KnownQueries(std::sync::RwLock<HashMap<[u8; 32], [u8; 32]>>);

/// How many fingerprints are remembered before starting over.
const KNOWN_QUERIES: usize = 10_000;

impl KnownQueries {
    fn get(&self, fingerprint: &[u8; 32]) -> Option<[u8; 32]> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(fingerprint)
            .copied()
    }

    fn insert(&self, fingerprint: [u8; 32], key: [u8; 32]) {
        let mut known = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= KNOWN_QUERIES {
            known.clear();
        }
        known.insert(fingerprint, key);
    }
}

/// The response-cache key of a request: what it asks, not how it is spelt. GraphQL's ignored
/// tokens (whitespace, commas, comments) and the JSON's layout and key order do not change it,
/// so variants of one query share one cache entry instead of each creating its own (a client
/// could otherwise fill the cache, and miss it at will, with respaced copies of one query).
fn cache_key(request: &async_graphql::Request) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(minified(&request.query).as_bytes());
    hash.update([0]);
    hash.update(
        request
            .operation_name
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    );
    hash.update([0]);
    let variables = serde_json::to_value(&request.variables).unwrap_or_default();
    hash.update(canonical_json(&variables).as_bytes());
    hash.update([0]);
    let extensions = serde_json::to_value(&request.extensions).unwrap_or_default();
    hash.update(canonical_json(&extensions).as_bytes());
    hash.finalize().into()
}

/// `query` without GraphQL's ignored tokens: whitespace, commas and comments are dropped, and
/// one space is kept only between two tokens that would otherwise run together. String and
/// block-string literals are kept byte for byte.
fn minified(query: &str) -> String {
    fn punctuator(c: char) -> bool {
        matches!(
            c,
            '!' | '$' | '&' | '(' | ')' | '.' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}'
        )
    }
    let mut out = String::with_capacity(query.len());
    let mut gap = false;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => gap = true,
            '#' => {
                while chars.next_if(|&n| n != '\n' && n != '\r').is_some() {}
                gap = true;
            }
            _ => {
                if gap && out.chars().last().is_some_and(|p| !punctuator(p)) && !punctuator(c) {
                    out.push(' ');
                }
                gap = false;
                out.push(c);
                if c == '"' {
                    copy_string(&mut chars, &mut out);
                }
            }
        }
    }
    out
}

/// Copies the rest of a string literal whose opening quote is already in `out` (a block
/// string when two more quotes follow), escapes included.
fn copy_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    let block = {
        let mut ahead = chars.clone();
        ahead.next() == Some('"') && ahead.next() == Some('"')
    };
    if block {
        out.push_str(&chars.by_ref().take(2).collect::<String>());
        let mut quotes = 0;
        while let Some(c) = chars.next() {
            out.push(c);
            match c {
                '\\' if chars.peek() == Some(&'"') => {
                    // `\"""` is an escaped triple quote, not the end.
                    out.extend(chars.next());
                    quotes = 0;
                }
                '"' => {
                    quotes += 1;
                    if quotes == 3 {
                        return;
                    }
                }
                _ => quotes = 0,
            }
        }
        return;
    }
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            '"' | '\n' | '\r' => return,
            _ => {}
        }
    }
}

/// JSON with object keys in sorted order at every level and no insignificant whitespace.
fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// `POST /graphql`.
pub async fn handler(
    State(state): State<AppState>,
    identity: Option<axum::Extension<Identity>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let gw = &state.gateway;
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                codes::BAD_USER_INPUT,
                &format!(
                    "the request body is larger than {} bytes",
                    gw.config.graphql_max_body_bytes
                ),
            );
        }
        Err(_) => {
            return refused(
                StatusCode::BAD_REQUEST,
                codes::BAD_USER_INPUT,
                "unreadable request body",
            );
        }
    };
    let identity = identity.map(|e| e.0);
    let ip = identity
        .as_ref()
        .map_or(IpAddr::from([0, 0, 0, 0]), |i| i.ip);
    let anonymous = identity.as_ref().is_none_or(|i| i.token.is_none());
    // The hot path: a catalogue query seen before, from an anonymous client.
    let fingerprint: Option<[u8; 32]> =
        (anonymous && gw.config.response_cache).then(|| Sha256::digest(&body).into());
    if let Some(fp) = &fingerprint
        && let Some(key) = gw.known_queries.get(fp)
    {
        return cached(&state, &key, body, ip).await;
    }
    // One operation per request: a batch (a JSON array) is not accepted, so it cannot multiply
    // the per-request limits below.
    let Ok(mut request) = serde_json::from_slice::<async_graphql::Request>(&body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            codes::BAD_USER_INPUT,
            "the body must be JSON: {\"query\": \"...\", \"variables\": {...}}",
        );
    };
    let operation_name = request.operation_name.clone();
    let (cacheable, fields, auth_mutations) = match request.parsed_query() {
        Ok(doc) => (
            catalogue_only(doc),
            count_fields(doc),
            count_auth_mutations(doc, operation_name.as_deref()),
        ),
        Err(e) => {
            return refused(StatusCode::BAD_REQUEST, codes::BAD_USER_INPUT, &e.message);
        }
    };
    if fields > gw.config.graphql_max_fields {
        return refused(
            StatusCode::BAD_REQUEST,
            codes::BAD_USER_INPUT,
            &format!(
                "the query selects {fields} fields (aliases included); at most {} are allowed",
                gw.config.graphql_max_fields
            ),
        );
    }
    if auth_mutations > 1 {
        return refused(
            StatusCode::BAD_REQUEST,
            codes::BAD_USER_INPUT,
            &format!(
                "the operation runs {auth_mutations} of register, login and refreshToken \
                 (aliases included); at most one is allowed per request"
            ),
        );
    }
    if let Some(fp) = fingerprint
        && cacheable
    {
        let key = cache_key(&request);
        gw.known_queries.insert(fp, key);
        return cached(&state, &key, body, ip).await;
    }
    let viewer = Viewer {
        ip,
        token: identity.as_ref().and_then(|i| i.token.clone()),
        user: identity.and_then(|i| i.user),
    };
    let a = execute(&state.schema, gw, request, viewer).await;
    respond(a.status, a.retry_after, a.body)
}

/// An anonymous catalogue query: from the response cache (under its [`cache_key`]), else run
/// once (single flight) and kept when it has no errors.
async fn cached(state: &AppState, fingerprint: &[u8; 32], body: Bytes, ip: IpAddr) -> Response {
    let gw = &state.gateway;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(68);
    hex.push_str("gql-");
    for b in fingerprint {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 15)]));
    }
    let slot = gw.cache.collection_slot(
        ecom_shared::cache::CATALOGUE_NAMESPACE,
        ecom_shared::cache::CATALOGUE_COLLECTION,
        &hex,
    );
    let run = move |state: AppState, body: Bytes| async move {
        let Ok(mut request) = serde_json::from_slice::<async_graphql::Request>(&body) else {
            return Answer {
                status: StatusCode::BAD_REQUEST,
                retry_after: None,
                body: Bytes::from_static(b"{\"data\":null,\"errors\":[{\"message\":\"unreadable request\",\"extensions\":{\"code\":\"BAD_USER_INPUT\"}}]}"),
                clean: false,
            };
        };
        let _ = request.parsed_query();
        let viewer = Viewer {
            ip,
            token: None,
            user: None,
        };
        execute(&state.schema, &state.gateway, request, viewer).await
    };
    // The answer this request computed itself when it led the fill but the answer was not
    // for keeping (an error): sent as is, never computed twice.
    let own: Arc<std::sync::Mutex<Option<Answer>>> = Arc::default();
    let (state2, body2, own2) = (state.clone(), body.clone(), own.clone());
    let loaded = gw
        .cache
        .get_or_load(slot, move || async move {
            let answer = run(state2, body2).await;
            if answer.clean && answer.status == StatusCode::OK {
                return Ok(Some(String::from_utf8_lossy(&answer.body).into_owned()));
            }
            *own2.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
            Ok(None)
        })
        .await;
    if let Ok(Some(body)) = loaded {
        return respond(StatusCode::OK, None, body);
    }
    if let Some(a) = own.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return respond(a.status, a.retry_after, a.body);
    }
    // Another request led the fill and its answer was not kept: compute ours.
    let a = run(state.clone(), body).await;
    respond(a.status, a.retry_after, a.body)
}

/// `GET /graphql`: the GraphQL console, from inside the binary (works offline).
pub async fn console() -> Html<&'static str> {
    Html(include_str!("../../assets/graphiql.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> [u8; 32] {
        cache_key(&serde_json::from_str::<async_graphql::Request>(body).expect("request"))
    }

    #[test]
    fn respaced_variants_of_one_query_share_one_cache_key() {
        let plain = r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#;
        for variant in [
            // Whitespace, commas and comments are GraphQL's ignored tokens.
            r#"{"query": "{products(limit:20 search:\"a  b\"){id,name}}", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "\n\t{ products ( limit : 20 ,,, search : \"a  b\" ) # the list\n { id\n name } }\n", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            // JSON layout and key order.
            r#"{ "variables" : { "b" : [ 1 , { "y" : 2 , "x" : 1 } ] , "a" : 1 } , "query" : "{ products(limit: 20, search: \"a  b\") { id name } }" }"#,
        ] {
            assert_eq!(key(plain), key(variant), "{variant}");
        }
        for different in [
            // Spaces inside a string literal are the query's meaning.
            r#"{"query": "{ products(limit: 20, search: \"a b\") { id name } }", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "{ products(limit: 2, search: \"a  b\") { id name } }", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "variables": {"a": 2, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "variables": {"a": 1, "b": [{"x": 1, "y": 2}, 1]}}"#,
            r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "operationName": "X", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
        ] {
            assert_ne!(key(plain), key(different), "{different}");
        }
    }

    #[test]
    fn minifying_keeps_tokens_apart_and_literals_whole() {
        assert_eq!(
            minified("query Q($a: Int = 1) { a: f(x: $a, y: 2 z: \"s, #t\") ...on T { b } }"),
            "query Q($a:Int=1){a:f(x:$a y:2 z:\"s, #t\")...on T{b}}"
        );
        assert_eq!(minified("{ f(a: \"\" b: \"x\") }"), "{f(a:\"\" b:\"x\")}");
        assert_eq!(
            minified("{ f(a: \"\"\"block ,  # \\\"\"\" \"\"\" ) }"),
            "{f(a:\"\"\"block ,  # \\\"\"\" \"\"\")}"
        );
        // Each variant parses to the same document as the original.
        for q in [
            "query Q($a: Int = 1) { a: f(x: $a, y: 2 z: \"s, #t\") ...on T { b } }",
            "{ f(a: \"\" b: \"x\") }",
            "{ f(a: \"\"\"block ,  # \\\"\"\" \"\"\" ) }",
        ] {
            async_graphql::parser::parse_query(minified(q)).expect("still parses");
        }
    }

    fn auth_mutations(query: &str, operation_name: Option<&str>) -> usize {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        count_auth_mutations(&doc, operation_name)
    }

    #[test]
    fn auth_mutations_are_counted_through_aliases_and_fragments() {
        let login = r#"login(email: "a@b.c", password: "12345678") { accessToken }"#;
        assert_eq!(auth_mutations(&format!("mutation {{ {login} }}"), None), 1);
        assert_eq!(
            auth_mutations(&format!("mutation {{ a: {login} b: {login} }}"), None),
            2
        );
        assert_eq!(
            auth_mutations(
                &format!(
                    "mutation {{ ...F ... on Mutation {{ {login} }} }} \
                     fragment F on Mutation {{ x: {login} ...G ...G }} \
                     fragment G on Mutation {{ refreshToken(refreshToken: \"t\") {{ accessToken }} }}"
                ),
                None
            ),
            4
        );
        // Queries cannot hold them; a field of that name below the root is not one.
        assert_eq!(auth_mutations("{ products { name } }", None), 0);
        assert_eq!(
            auth_mutations("mutation { cancelOrder(id: 1) { login: id } }", None),
            0
        );
        // The named operation is the one that runs.
        let two = format!("mutation A {{ {login} }} mutation B {{ {login} }}");
        assert_eq!(auth_mutations(&two, Some("A")), 1);
        assert_eq!(auth_mutations(&two, None), 2);
    }
}
