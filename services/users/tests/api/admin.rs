//! The caller's own account and admin user management.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn users_edit_their_name_and_password_but_not_their_role(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, access, refresh) = app.user("ivy@example.com").await;
    let (status, me) = app
        .patch(
            "/users/me",
            &json!({"full_name": "Ivy Updated", "role": "admin", "is_active": false}),
            Some(&access),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (
            me["full_name"].as_str(),
            me["role"].as_str(),
            me["is_active"].as_bool()
        ),
        (Some("Ivy Updated"), Some("user"), Some(true))
    );

    let got = app
        .patch("/users/me", &json!({"password": "short"}), Some(&access))
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let (status, _) = app
        .patch(
            "/users/me",
            &json!({"password": "a-new-password"}),
            Some(&access),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.login("ivy@example.com", "password123").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ivy@example.com", "a-new-password").await.0,
        StatusCode::OK
    );
    // A password change ends the other sessions.
    let got = app
        .post("/auth/refresh", &json!({"refresh_token": refresh}), None)
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn admins_list_get_update_and_delete_users(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            app.register(&format!("u{i}@example.com"), "password123")
                .await["id"]
                .as_i64()
                .expect("id"),
        );
    }
    let (status, page) = app.get("/users?limit=2&offset=1", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (
            page["total"].as_i64(),
            page["limit"].as_i64(),
            page["offset"].as_i64()
        ),
        (Some(4), Some(2), Some(1))
    );
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));

    let (status, one) = app.get(&format!("/users/{}", ids[0]), Some(&admin)).await;
    assert_eq!(
        (status, one["email"].as_str()),
        (StatusCode::OK, Some("u0@example.com"))
    );

    let (status, promoted) = app
        .patch(
            &format!("/users/{}", ids[1]),
            &json!({"role": "admin"}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        (status, promoted["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    let got = app
        .patch(
            &format!("/users/{}", ids[1]),
            &json!({"role": "superuser"}),
            Some(&admin),
        )
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");

    let (status, _) = app
        .delete(&format!("/users/{}", ids[2]), Some(&admin))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/users/{}", ids[2]), Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.delete(&format!("/users/{}", ids[2]), Some(&admin))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn admin_routes_refuse_users_and_anonymous_callers(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (id, user, _) = app.user("jack@example.com").await;
    for path in ["/users".to_owned(), format!("/users/{id}")] {
        assert_error(
            &app.get(&path, Some(&user)).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        );
        assert_error(
            &app.get(&path, None).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        );
    }
    assert_error(
        &app.patch(
            &format!("/users/{id}"),
            &json!({"role": "admin"}),
            Some(&user),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.delete(&format!("/users/{id}"), Some(&user)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, me) = app.get("/users/me", Some(&user)).await;
    assert_eq!(
        (status, me["role"].as_str()),
        (StatusCode::OK, Some("user")),
        "still a user"
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn bad_ids_and_pages_are_422(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    for path in [
        "/users/abc",
        "/users/0",
        "/users/-3",
        "/users/99999999999999999999",
    ] {
        assert_error(
            &app.get(path, Some(&admin)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }
    for path in [
        "/users?limit=0",
        "/users?limit=101",
        "/users?offset=-1",
        "/users?limit=ten",
    ] {
        assert_error(
            &app.get(path, Some(&admin)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn admins_cannot_lock_themselves_out(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    let (_, me) = app.get("/users/me", Some(&admin)).await;
    let id = me["id"].as_i64().expect("id");
    for change in [json!({"role": "user"}), json!({"is_active": false})] {
        assert_error(
            &app.patch(&format!("/users/{id}"), &change, Some(&admin))
                .await,
            StatusCode::CONFLICT,
            "invalid_state",
        );
    }
    assert_error(
        &app.delete(&format!("/users/{id}"), Some(&admin)).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn the_bootstrap_admin_is_reset_at_every_start(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let admin = app.admin_token().await;
    let (_, me) = app.get("/users/me", Some(&admin)).await;
    let (status, _) = app
        .patch(
            "/users/me",
            &json!({"password": "changed-by-hand"}),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    drop(app);
    let again = spawn_app_with(pool, &[("ECOM_ADMIN_PASSWORD", "configured-secret")]).await;
    assert_eq!(
        again.login(ADMIN_EMAIL, "configured-secret").await.0,
        StatusCode::OK
    );
    let (_, me2) = again
        .get(
            "/users/me",
            Some(&again.admin_token_with("configured-secret").await),
        )
        .await;
    assert_eq!(me["id"], me2["id"], "the same account, not a new one");
}
