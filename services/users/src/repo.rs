//! Every SQL statement of the Users service, checked at compile time against the migrations.
//! Functions take an executor so a unit of work can run several of them in one transaction.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{Role, User};

/// A stored refresh token, locked for rotation.
#[derive(Debug)]
pub struct RefreshRow {
    pub id: i64,
    pub user_id: i64,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A stored signing key.
#[derive(Debug)]
pub struct KeyRow {
    pub kid: String,
    pub private_key: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

pub async fn insert_user(
    e: impl PgExecutor<'_>,
    email: &str,
    password_hash: &str,
    full_name: &str,
    role: Role,
) -> sqlx::Result<User> {
    sqlx::query_as!(
        User,
        r#"INSERT INTO users (email, password_hash, full_name, role)
           VALUES ($1, $2, $3, $4)
           RETURNING id, email, full_name, role AS "role: Role", is_active, created_at, updated_at"#,
        email,
        password_hash,
        full_name,
        role.as_str(),
    )
    .fetch_one(e)
    .await
}

/// The bootstrap admin: created, or reset to this password, role admin and active.
pub async fn upsert_admin(
    e: impl PgExecutor<'_>,
    email: &str,
    password_hash: &str,
) -> sqlx::Result<User> {
    sqlx::query_as!(
        User,
        r#"INSERT INTO users (email, password_hash, full_name, role)
           VALUES ($1, $2, 'Administrator', 'admin')
           ON CONFLICT (email) DO UPDATE
              SET password_hash = EXCLUDED.password_hash, role = 'admin', is_active = TRUE,
                  updated_at = now()
           RETURNING id, email, full_name, role AS "role: Role", is_active, created_at, updated_at"#,
        email,
        password_hash,
    )
    .fetch_one(e)
    .await
}

pub async fn credentials_by_email(
    e: impl PgExecutor<'_>,
    email: &str,
) -> sqlx::Result<Option<(User, String)>> {
    let row = sqlx::query!(
        r#"SELECT id, email, full_name, role AS "role: Role", is_active, created_at, updated_at,
                  password_hash
           FROM users WHERE email = $1"#,
        email
    )
    .fetch_optional(e)
    .await?;
    Ok(row.map(|r| {
        let user = User {
            id: r.id,
            email: r.email,
            full_name: r.full_name,
            role: r.role,
            is_active: r.is_active,
            created_at: r.created_at,
            updated_at: r.updated_at,
        };
        (user, r.password_hash)
    }))
}

pub async fn password_hash(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", id)
        .fetch_optional(e)
        .await
}

pub async fn get_user(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"SELECT id, email, full_name, role AS "role: Role", is_active, created_at, updated_at
           FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(e)
    .await
}

pub async fn users_by_ids(e: impl PgExecutor<'_>, ids: &[i64]) -> sqlx::Result<Vec<User>> {
    sqlx::query_as!(
        User,
        r#"SELECT id, email, full_name, role AS "role: Role", is_active, created_at, updated_at
           FROM users WHERE id = ANY($1) ORDER BY id"#,
        ids
    )
    .fetch_all(e)
    .await
}

pub async fn list_users(
    conn: &mut PgConnection,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<User>, i64)> {
    let items = sqlx::query_as!(
        User,
        r#"SELECT id, email, full_name, role AS "role: Role", is_active, created_at, updated_at
           FROM users ORDER BY id LIMIT $1 OFFSET $2"#,
        limit,
        offset
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM users"#)
        .fetch_one(&mut *conn)
        .await?;
    Ok((items, total))
}

pub async fn update_profile(
    e: impl PgExecutor<'_>,
    id: i64,
    full_name: Option<&str>,
    password_hash: Option<&str>,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"UPDATE users
              SET full_name = COALESCE($2, full_name),
                  password_hash = COALESCE($3, password_hash),
                  updated_at = now()
            WHERE id = $1
        RETURNING id, email, full_name, role AS "role: Role", is_active, created_at, updated_at"#,
        id,
        full_name,
        password_hash,
    )
    .fetch_optional(e)
    .await
}

pub async fn admin_update(
    e: impl PgExecutor<'_>,
    id: i64,
    role: Option<Role>,
    is_active: Option<bool>,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as!(
        User,
        r#"UPDATE users
              SET role = COALESCE($2, role),
                  is_active = COALESCE($3, is_active),
                  updated_at = now()
            WHERE id = $1
        RETURNING id, email, full_name, role AS "role: Role", is_active, created_at, updated_at"#,
        id,
        role.map(Role::as_str),
        is_active,
    )
    .fetch_optional(e)
    .await
}

pub async fn delete_user(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM users WHERE id = $1", id)
        .execute(e)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_refresh(
    e: impl PgExecutor<'_>,
    token_hash: &[u8],
    user_id: i64,
    family_id: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash,
        user_id,
        family_id,
        expires_at
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Locks the row of a presented refresh token: concurrent refreshes of one token serialise here.
pub async fn lock_refresh(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> sqlx::Result<Option<RefreshRow>> {
    sqlx::query_as!(
        RefreshRow,
        "SELECT id, user_id, family_id, expires_at, used_at, revoked_at
           FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        token_hash
    )
    .fetch_optional(conn)
    .await
}

pub async fn mark_refresh_used(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE refresh_tokens SET used_at = now() WHERE id = $1",
        id
    )
    .execute(e)
    .await?;
    Ok(())
}

pub async fn revoke_family(e: impl PgExecutor<'_>, family_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

pub async fn revoke_family_of(e: impl PgExecutor<'_>, token_hash: &[u8]) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now()
          WHERE revoked_at IS NULL
            AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
        token_hash
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

pub async fn revoke_user_tokens(e: impl PgExecutor<'_>, user_id: i64) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected())
}

/// Drops refresh tokens that expired more than a day ago (housekeeping).
pub async fn purge_expired_refresh(e: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done =
        sqlx::query!("DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'")
            .execute(e)
            .await?;
    Ok(done.rows_affected())
}

/// Serialises key creation and rotation across replicas (transaction-scoped).
pub async fn lock_keys(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('ecom.users.signing_keys'))")
        .execute(conn)
        .await?;
    Ok(())
}

/// Keys still useful: the active ones, and retired ones whose tokens may not have expired yet.
pub async fn usable_keys(
    e: impl PgExecutor<'_>,
    retired_after: DateTime<Utc>,
) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as!(
        KeyRow,
        "SELECT kid, private_key, public_jwk, created_at, retired_at
           FROM signing_keys
          WHERE retired_at IS NULL OR retired_at > $1
          ORDER BY created_at DESC, kid",
        retired_after
    )
    .fetch_all(e)
    .await
}

pub async fn retire_active_keys(e: impl PgExecutor<'_>) -> sqlx::Result<()> {
    sqlx::query!("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL")
        .execute(e)
        .await?;
    Ok(())
}

pub async fn insert_key(
    e: impl PgExecutor<'_>,
    kid: &str,
    private_key: &[u8],
    public_jwk: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO signing_keys (kid, private_key, public_jwk) VALUES ($1, $2, $3)",
        kid,
        private_key,
        public_jwk
    )
    .execute(e)
    .await?;
    Ok(())
}
