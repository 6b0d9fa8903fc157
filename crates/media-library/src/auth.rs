//! Login sessions and API tokens of the web server (schema version 4).
//!
//! The HTTP layer creates the secrets and hands over only their SHA-256
//! digests (hex); this module stores and looks them up. A lookup that
//! finds a row also returns the user, so one query authenticates a request.

use crate::accounts::User;
use crate::db::{Db, on_pool};
use crate::error::LibraryError;

/// An API token as listed to its owner (never the secret itself).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TokenOwner {
    id: i64,
    name: String,
    password_hash: String,
    is_admin: bool,
    created_at: i64,
    token_id: i64,
}

impl Db {
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        expires_at: i64,
    ) -> Result<(), LibraryError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(crate::unix_now())
        .bind(expires_at)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The user of an unexpired session.
    pub async fn session_user(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<User>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT u.id, u.name, u.password_hash, u.is_admin, u.created_at FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1 AND s.expires_at > $2"
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(p)
        .await)?)
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), LibraryError> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ends every session of a user (password changed, account removed).
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<(), LibraryError> {
        on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Removes expired sessions; returns how many.
    pub async fn purge_sessions(&self, now: i64) -> Result<u64, LibraryError> {
        Ok(
            on_pool!(self, p => sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?,
        )
    }

    pub async fn create_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
    ) -> Result<i64, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id"
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(crate::unix_now())
        .fetch_one(p)
        .await)?)
    }

    /// The user a token belongs to and the token's id; records when it
    /// was last used.
    pub async fn token_user(&self, token_hash: &str) -> Result<Option<(User, i64)>, LibraryError> {
        let row: Option<TokenOwner> = on_pool!(self, p => sqlx::query_as(
            "SELECT u.id, u.name, u.password_hash, u.is_admin, u.created_at, t.id AS token_id \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(p)
        .await)?;
        let user = row.map(|r| {
            (
                User {
                    id: r.id,
                    name: r.name,
                    password_hash: r.password_hash,
                    is_admin: r.is_admin,
                    created_at: r.created_at,
                },
                r.token_id,
            )
        });
        if user.is_some() {
            on_pool!(self, p => sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
                .bind(crate::unix_now())
                .bind(token_hash)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))?;
        }
        Ok(user)
    }

    pub async fn api_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, user_id, name, created_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 ORDER BY id"
        )
        .bind(user_id)
        .fetch_all(p)
        .await)?)
    }

    /// Deletes token `id` if it belongs to `user_id`.
    pub async fn delete_api_token(&self, user_id: i64, id: i64) -> Result<bool, LibraryError> {
        let n = on_pool!(self, p => sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }
}
