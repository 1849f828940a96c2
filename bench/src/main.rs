//! `bench-bare UPSTREAM PORT`: fetches `/products?limit=20` and `/products/1` from a running
//! Products service once, then serves those exact bytes from memory with bare axum. The
//! benchmark compares the real service against this ceiling: same JSON, same framework, no work.

use axum::{Router, http::header, routing::get};

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
    const JSON: [(header::HeaderName, &str); 1] = [(header::CONTENT_TYPE, "application/json")];
    let app = Router::new()
        .route(
            "/products",
            get(move || async move { (JSON, list.clone()) }),
        )
        .route(
            "/products/{id}",
            get(move || async move { (JSON, one.clone()) }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
