//! Users and their watch progress.
//!
//! Passwords arrive already hashed (the HTTP layer owns hashing); this
//! module only stores what it is given.

use crate::db::{Db, on_pool};
use crate::error::LibraryError;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Progress {
    pub user_id: i64,
    pub file_id: i64,
    pub position_s: f64,
    pub finished: bool,
    pub updated_at: i64,
}

impl Db {
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> Result<i64, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id"
        )
        .bind(name)
        .bind(password_hash)
        .bind(is_admin)
        .bind(crate::unix_now())
        .fetch_one(p)
        .await)?)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, name, password_hash, is_admin, created_at FROM users WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(p)
        .await)?)
    }

    pub async fn user(&self, id: i64) -> Result<Option<User>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, name, password_hash, is_admin, created_at FROM users WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await)?)
    }

    /// Every account, by name.
    pub async fn users(&self) -> Result<Vec<User>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT id, name, password_hash, is_admin, created_at FROM users ORDER BY name"
        )
        .fetch_all(p)
        .await)?)
    }

    pub async fn count_users(&self) -> Result<i64, LibraryError> {
        Ok(
            on_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(p)
            .await)?,
        )
    }

    /// Deletes an account; its sessions, tokens and watch progress go with it.
    pub async fn delete_user(&self, id: i64) -> Result<bool, LibraryError> {
        let n = on_pool!(self, p => sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    pub async fn set_password_hash(
        &self,
        id: i64,
        password_hash: &str,
    ) -> Result<(), LibraryError> {
        on_pool!(self, p => sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records where `user_id` is in `file_id` (one row per pair).
    pub async fn set_progress(
        &self,
        user_id: i64,
        file_id: i64,
        position_s: f64,
        finished: bool,
    ) -> Result<(), LibraryError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO watch_progress (user_id, file_id, position_s, finished, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, file_id) DO UPDATE SET \
             position_s = excluded.position_s, finished = excluded.finished, updated_at = excluded.updated_at"
        )
        .bind(user_id)
        .bind(file_id)
        .bind(position_s)
        .bind(finished)
        .bind(crate::unix_now())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn progress(
        &self,
        user_id: i64,
        file_id: i64,
    ) -> Result<Option<Progress>, LibraryError> {
        Ok(on_pool!(self, p => sqlx::query_as(
            "SELECT user_id, file_id, position_s, finished, updated_at FROM watch_progress \
             WHERE user_id = $1 AND file_id = $2"
        )
        .bind(user_id)
        .bind(file_id)
        .fetch_optional(p)
        .await)?)
    }
}
