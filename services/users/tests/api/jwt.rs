//! The JWT abuse matrix, key rotation, and verification by another service through the JWKS.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ecom_shared::auth::{AuthError, JwtVerifier, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

async fn signing_key(app: &TestApp) -> (String, EncodingKey) {
    let (kid, der): (String, Vec<u8>) =
        sqlx::query_as("SELECT kid, private_key FROM signing_keys WHERE retired_at IS NULL")
            .fetch_one(&app.pool)
            .await
            .expect("key");
    (kid, EncodingKey::from_ed_der(&der))
}

fn claims(sub: &str, role: &str, exp_offset: i64, typ: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": sub, "role": role, "iat": now, "exp": now + exp_offset, "jti": "t", "typ": typ, "iss": "ecom-users", "aud": "ecom"})
}

fn sign(kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn forged_and_misused_tokens_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (id, access, refresh) = app.user("mallory@example.com").await;
    let sub = id.to_string();
    let (kid, key) = signing_key(&app).await;
    let (_, jwks) = app.get("/.well-known/jwks.json", None).await;
    let public_x = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().expect("x"))
        .expect("x");

    // A correctly signed control token is accepted, so each refusal below is about its one flaw.
    let control = sign(&kid, &key, &claims(&sub, "user", 600, "access"));
    assert_eq!(app.get("/users/me", Some(&control)).await.0, StatusCode::OK);

    let parts: Vec<&str> = access.split('.').collect();
    // Issued tokens say who issued them and for which platform (RFC 9068's `iss` and `aud`).
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("json");
    assert_eq!(
        (&payload["iss"], &payload["aud"]),
        (&json!("ecom-users"), &json!("ecom"))
    );
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        parts[1]
    );
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &h,
            &claims(&sub, "admin", 600, "access"),
            &EncodingKey::from_secret(&public_x),
        )
        .expect("hs256")
    };
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims(&sub, "admin", 600, "access")),
        parts[2]
    );
    let unknown_kid = {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[7u8; 32]);
        sign(
            "not-a-key-of-ours",
            &EncodingKey::from_ed_der(&der),
            &claims(&sub, "admin", 600, "access"),
        )
    };
    let refresh_typed = sign(&kid, &key, &claims(&sub, "user", 600, "refresh"));
    let bad_subject = sign(&kid, &key, &claims("not-a-number", "user", 600, "access"));
    // Correctly signed by our key, but for another audience or from another issuer, or
    // without either claim (RFC 9068): not a token for this platform.
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims(&sub, "user", 600, "access");
        change(&mut c);
        sign(&kid, &key, &c)
    };
    let other_audience = with(&|c| c["aud"] = json!("another-shop"));
    let other_issuer = with(&|c| c["iss"] = json!("someone-else"));
    let no_audience = with(&|c| {
        c.as_object_mut().expect("claims").remove("aud");
    });
    let no_issuer = with(&|c| {
        c.as_object_mut().expect("claims").remove("iss");
    });
    let cases = [
        ("alg none", alg_none),
        ("HS256 signed with the public key", hs256_with_public_key),
        ("tampered payload", tampered),
        ("unknown kid", unknown_kid),
        ("refresh token used as access token", refresh),
        ("token of another type", refresh_typed),
        ("non-numeric subject", bad_subject),
        ("another audience", other_audience),
        ("another issuer", other_issuer),
        ("no audience", no_audience),
        ("no issuer", no_issuer),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, token) in cases {
        let got = app.get("/users/me", Some(&token)).await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{what}: {}", got.1);
        assert_eq!(got.1["code"], "invalid_token", "{what}: {}", got.1);
    }

    let expired = sign(&kid, &key, &claims(&sub, "user", -3600, "access"));
    assert_error(
        &app.get("/users/me", Some(&expired)).await,
        StatusCode::UNAUTHORIZED,
        "token_expired",
    );
    let res = app
        .client
        .get(app.url("/users/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("req");
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_error(
        &parts_of(res).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

async fn parts_of(r: reqwest::Response) -> (StatusCode, Value) {
    crate::helpers::parts(r).await
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn access_tokens_carry_the_contract_claims(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (id, access, _) = app.user("claims@example.com").await;
    let mut it = access.split('.');
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().expect("h")).expect("b64"))
            .expect("json");
    let body: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().expect("p")).expect("b64"))
            .expect("json");
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(body["sub"], id.to_string());
    assert_eq!(body["role"], "user");
    assert_eq!(body["typ"], "access");
    assert!(body["jti"].is_string());
    assert_eq!(
        body["exp"].as_i64().expect("exp") - body["iat"].as_i64().expect("iat"),
        900
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn rotation_signs_with_a_new_key_and_old_tokens_keep_working(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    let (_, before, _) = app.user("rot@example.com").await;
    let remote = JwtVerifier::remote(app.url("/.well-known/jwks.json"))
        .with_min_refetch_interval(Duration::ZERO);
    assert_eq!(remote.verify(&before).await.map(|u| u.role), Ok(Role::User));

    let (status, rotated) = app
        .post("/admin/keys/rotate", &json!({}), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (status, tokens) = app.login("rot@example.com", "password123").await;
    assert_eq!(status, StatusCode::OK);
    let after = tokens["access_token"].as_str().expect("token");
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).expect("header").kid;
    assert_ne!(kid_of(&before), kid_of(after));
    assert_eq!(kid_of(after).as_deref(), rotated["kid"].as_str());

    let (_, jwks) = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(
        jwks["keys"].as_array().map(Vec::len),
        Some(2),
        "old and new key both published"
    );
    for token in [before.as_str(), after] {
        assert_eq!(app.get("/users/me", Some(token)).await.0, StatusCode::OK);
        // Another service learns the new key on its first unknown kid.
        assert!(remote.verify(token).await.is_ok());
    }
    let user = app.user("rot2@example.com").await;
    assert_error(
        &app.post("/admin/keys/rotate", &json!({}), Some(&user.1))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
}

#[tokio::test]
async fn a_verifier_without_reachable_keys_says_unavailable_not_invalid() {
    let verifier = JwtVerifier::remote("http://127.0.0.1:1/.well-known/jwks.json".to_owned());
    let token = format!(
        "{}.{}.sig",
        b64(&json!({"alg": "EdDSA", "kid": "k"})),
        b64(&json!({}))
    );
    assert_eq!(
        verifier.verify(&token).await,
        Err(AuthError::KeysUnavailable)
    );
    assert_eq!(verifier.verify_bearer(None).await, Err(AuthError::Missing));
}
