//! `ecom.users.v1.UserService` over a real socket, plus health and reflection.

use ecom_proto::users::v1::{
    GetUserRequest, GetUsersRequest, Role, user_service_client::UserServiceClient,
};
use sqlx::PgPool;
use tonic::{Code, Request};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::*;

fn authed<T>(msg: T, token: &str) -> Request<T> {
    ecom_shared::auth::with_bearer(Request::new(msg), token)
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn users_see_themselves_admins_see_everyone_others_get_not_found(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (alice, alice_token, _) = app.user("alice@example.com").await;
    let (bob, _, _) = app.user("bob@example.com").await;
    let admin = app.admin_token().await;
    let mut client = UserServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");

    let me = client
        .get_user(authed(GetUserRequest { id: alice }, &alice_token))
        .await
        .expect("self")
        .into_inner();
    assert_eq!(
        (me.email.as_str(), me.role()),
        ("alice@example.com", Role::User)
    );
    let other = client
        .get_user(authed(GetUserRequest { id: bob }, &alice_token))
        .await
        .expect_err("not yours");
    assert_eq!(other.code(), Code::NotFound);
    assert_eq!(
        other
            .metadata()
            .get("ecom-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("not_found")
    );
    let missing = client
        .get_user(authed(GetUserRequest { id: 999_999 }, &admin))
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), Code::NotFound);

    let all = client
        .get_users(authed(
            GetUsersRequest {
                ids: vec![bob, alice, 999_999],
            },
            &admin,
        ))
        .await
        .expect("admin")
        .into_inner();
    assert_eq!(
        all.users.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![bob, alice],
        "in the order asked"
    );
    let mine = client
        .get_users(authed(
            GetUsersRequest {
                ids: vec![bob, alice],
            },
            &alice_token,
        ))
        .await
        .expect("user")
        .into_inner();
    assert_eq!(
        mine.users.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![alice]
    );

    let anonymous = client
        .get_user(Request::new(GetUserRequest { id: alice }))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let too_many = client
        .get_users(authed(
            GetUsersRequest {
                ids: (1..=101).collect(),
            },
            &admin,
        ))
        .await
        .expect_err("too many");
    assert_eq!(too_many.code(), Code::InvalidArgument);

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"grpc_server_handled_total{service="users",grpc_method="ecom.users.v1.UserService/GetUser",grpc_code="NotFound"} 2"#),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn grpc_health_and_reflection_answer(pool: PgPool) {
    let app = spawn_app(pool).await;
    let metrics = ecom_shared::metrics::Metrics::new("test-client");
    let channel = ecom_shared::grpc::channel(
        &app.grpc_url,
        metrics.clone(),
        std::time::Duration::from_secs(5),
        ecom_shared::grpc::DEFAULT_RESOLVE_EVERY,
    )
    .expect("channel");
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "ecom.users.v1.UserService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = stream.message().await.expect("reply").expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"ecom.users.v1.UserService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
    // The shared client channel counts its calls.
    let client_metrics = metrics.encode();
    assert!(
        client_metrics.contains(r#"grpc_client_handled_total{service="test-client",grpc_method="grpc.health.v1.Health/Check",grpc_code="Ok"} 2"#),
        "{client_metrics}"
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn services_get_tokens_for_their_own_credential_only_and_users_endpoints_refuse_them(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let (alice, _, _) = app.user("alice@example.com").await;
    let metrics = ecom_shared::metrics::Metrics::new("test-client");
    let channel = ecom_shared::grpc::channel(
        &app.grpc_url,
        metrics,
        std::time::Duration::from_secs(5),
        ecom_shared::grpc::DEFAULT_RESOLVE_EVERY,
    )
    .expect("channel");

    let wrong = ecom_shared::service_tokens::ServiceTokens::from_users(
        channel.clone(),
        "payments",
        ecom_shared::config::Secret::new("not-the-secret"),
    );
    let refused = wrong.token().await.expect_err("wrong secret");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // Right after a failure, callers fail at once instead of queueing behind another attempt.
    let started = std::time::Instant::now();
    let again = wrong.token().await.expect_err("still wrong");
    assert_eq!(again.code(), Code::Unauthenticated);
    assert!(started.elapsed() < std::time::Duration::from_millis(500));

    // Each credential mints its own service's name only: the Orders credential cannot become
    // Payments (which may mark orders paid), and the gateway or Products, which never act as
    // themselves, have no identity to mint, whatever credential is shown.
    let dev = ecom_shared::config::dev_service_secret;
    for (name, secret) in [
        ("payments", dev("orders")),
        ("orders", dev("payments")),
        ("gateway", dev("gateway")),
        ("products", dev("products")),
        ("gateway", dev("orders")),
        (
            "payments",
            ecom_shared::config::DEV_SERVICE_SECRET.to_owned(),
        ),
    ] {
        let other = ecom_shared::service_tokens::ServiceTokens::from_users(
            channel.clone(),
            name,
            ecom_shared::config::Secret::new(secret.clone()),
        );
        let refused = other
            .token()
            .await
            .expect_err(&format!("{name} with {secret}"));
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{name} with {secret}"
        );
    }

    let tokens = ecom_shared::service_tokens::ServiceTokens::from_users(
        channel.clone(),
        "payments",
        ecom_shared::config::Secret::new(dev("payments")),
    );
    let token = tokens.token().await.expect("service token");
    assert_eq!(tokens.token().await.expect("cached"), token, "cached");

    // Verified against the real JWKS: a service, not a user.
    let verifier = ecom_shared::auth::JwtVerifier::remote(app.url("/.well-known/jwks.json"));
    assert_eq!(
        verifier.verify_caller(&token).await,
        Ok(ecom_shared::auth::Caller::Service("payments".into()))
    );
    assert!(verifier.verify(&token).await.is_err(), "not a user token");

    // User endpoints refuse it, over HTTP and gRPC.
    let me = app.get("/users/me", Some(&token)).await;
    ecom_shared::testing::assert_error(&me, reqwest::StatusCode::UNAUTHORIZED, "invalid_token");
    let mut client = UserServiceClient::new(channel);
    let denied = client
        .get_user(authed(GetUserRequest { id: alice }, &token))
        .await
        .expect_err("a service token is not a user");
    assert_eq!(denied.code(), Code::Unauthenticated);
}
