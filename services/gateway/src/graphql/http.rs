//! `/graphql` over HTTP: the console page (GET) and the endpoint (POST), which reads, parses and
//! checks a request, answers it from the response cache when it may, else runs it, and turns
//! the GraphQL response into an HTTP answer (status, `Retry-After`, JSON body).

use std::net::IpAddr;

use async_graphql::ServerError;
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use super::{
    Viewer,
    analysis::{Analysis, BodyFingerprint, CacheKey, LimitExceeded},
    execute,
    response_cache::{self, Answer},
};
use crate::{AppState, error::codes, limits::Identity};

/// `GET /graphql`: the GraphQL console, from inside the binary (works offline).
pub async fn console() -> Html<&'static str> {
    Html(include_str!("../../assets/graphiql.html"))
}

/// `POST /graphql`.
pub async fn handler(
    State(state): State<AppState>,
    identity: Option<axum::Extension<Identity>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match answer(&state, identity.map(|e| e.0), body).await {
        Ok(answer) => answer.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The answer to one request, or why it was refused before it ran.
async fn answer(
    state: &AppState,
    identity: Option<Identity>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Answer, Refusal> {
    let gw = &state.gateway;
    let body = body.map_err(|e| Refusal::of_body(&e, gw.config.graphql_max_body_bytes))?;
    let viewer = Viewer::from(identity);
    // The hot path: a catalogue query seen before, from an anonymous client.
    let fingerprint =
        (viewer.token.is_none() && gw.config.response_cache).then(|| BodyFingerprint::of(&body));
    if let Some(key) = fingerprint.and_then(|fp| gw.known_queries.get(&fp)) {
        return Ok(from_cache(state, key, body, viewer.ip).await);
    }
    let mut request = parse(&body)?;
    let analysis = analyse(&mut request)?;
    analysis.check(gw.config.graphql_max_fields)?;
    if let Some(fp) = fingerprint
        && analysis.catalogue_only
    {
        let key = CacheKey::of(&request);
        gw.known_queries.insert(fp, key);
        return Ok(from_cache(state, key, body, viewer.ip).await);
    }
    Ok(answer_of(execute(&state.schema, gw, request, viewer).await))
}

/// One operation per request: a batch (a JSON array) is not accepted, so it cannot multiply
/// the per-request limits.
fn parse(body: &Bytes) -> Result<async_graphql::Request, Refusal> {
    serde_json::from_slice(body).map_err(|_| Refusal::NotJson)
}

/// Parses the query (kept in `request` for the run) and analyses it.
fn analyse(request: &mut async_graphql::Request) -> Result<Analysis, Refusal> {
    let operation_name = request.operation_name.clone();
    match request.parsed_query() {
        Ok(doc) => Ok(Analysis::of(doc, operation_name.as_deref())),
        Err(e) => Err(Refusal::Unparsable(e.message)),
    }
}

/// An anonymous catalogue query: from the response cache under `key`, else run once.
async fn from_cache(state: &AppState, key: CacheKey, body: Bytes, ip: IpAddr) -> Answer {
    let run = || run_anonymous(state.clone(), body.clone(), ip);
    response_cache::get_or_run(&state.gateway.cache, &key, run).await
}

/// Runs an anonymous request from its body (parsed again: a hit on a known body never was).
async fn run_anonymous(state: AppState, body: Bytes, ip: IpAddr) -> Answer {
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
    answer_of(execute(&state.schema, &state.gateway, request, viewer).await)
}

/// An executed response as an HTTP answer (refusals by the schema labelled `BAD_USER_INPUT`).
fn answer_of(mut response: async_graphql::Response) -> Answer {
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

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Why a request was refused before it ran: always the client's fault (`BAD_USER_INPUT`).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("unreadable request body")]
    Unreadable,
    #[error("the body must be JSON: {{\"query\": \"...\", \"variables\": {{...}}}}")]
    NotJson,
    /// The parser's message.
    #[error("{0}")]
    Unparsable(String),
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

impl Refusal {
    /// A body that could not be read (`limit`: the body limit in bytes).
    fn of_body(rejection: &BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge(limit)
        } else {
            Self::Unreadable
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unreadable | Self::NotJson | Self::Unparsable(_) | Self::Limit(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

impl IntoResponse for Refusal {
    /// A GraphQL error answer that never ran: one error with `BAD_USER_INPUT`.
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "data": null,
            "errors": [{"message": self.to_string(), "extensions": {"code": codes::BAD_USER_INPUT}}],
        });
        (self.status(), axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_their_messages() {
        assert_eq!(
            Refusal::NotJson.to_string(),
            "the body must be JSON: {\"query\": \"...\", \"variables\": {...}}"
        );
        assert_eq!(
            Refusal::TooLarge(32768).to_string(),
            "the request body is larger than 32768 bytes"
        );
        assert_eq!(Refusal::TooLarge(1).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(Refusal::Unreadable.status(), StatusCode::BAD_REQUEST);
    }
}
