//! `bench-bare UPSTREAM PORT [GATEWAY]`: fetches `/products?limit=20` and `/products/1` from a
//! running Products service once (and, given a gateway, its answer to the GraphQL benchmark
//! query), then serves those exact bytes from memory with bare axum. The benchmark compares the
//! real services against this ceiling: same JSON, same framework, no work.

use axum::{
    Router,
    http::header,
    routing::{get, post},
};

/// The GraphQL benchmark request (also in scripts/bench.sh).
const GRAPHQL_BODY: &str = r#"{"query":"{ products(limit: 20) { id name price } }"}"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let upstream = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8002".to_owned());
    let port: u16 = args.next().map_or(Ok(18002), |p| p.parse())?;
    let client = reqwest::Client::new();
    let list = client
        .get(format!("{upstream}/products?limit=20"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let one = client
        .get(format!("{upstream}/products/1"))
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let graphql = match args.next() {
        Some(gateway) => Some(
            client
                .post(format!("{gateway}/graphql"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(GRAPHQL_BODY)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?,
        ),
        None => None,
    };
    const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];
    let mut app = Router::new()
        .route(
            "/products",
            get(move || async move { (JSON, list.clone()) }),
        )
        .route(
            "/products/{id}",
            get(move || async move { (JSON, one.clone()) }),
        );
    if let Some(answer) = graphql {
        app = app.route(
            "/graphql",
            post(move || async move { (JSON, answer.clone()) }),
        );
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
