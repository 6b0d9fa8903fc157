//! Accounts, sessions and API tokens, and the layer that checks them.
//!
//! - Passwords: argon2id (the `argon2` crate's defaults, OWASP's minimum:
//!   19 MiB, 2 passes), hashed on the blocking pool, at most two at a time
//!   so a login flood cannot take every core.
//! - Browser sessions: a random 256-bit id in an `HttpOnly; SameSite=Lax`
//!   cookie (`Secure` behind TLS); the database keeps only its SHA-256.
//! - API tokens (`rt_…`): sent as `Authorization: Bearer`, stored as
//!   SHA-256; a token acts as its owner with the owner's role.
//! - Stream URLs for players without cookies carry a signed, expiring
//!   `?token=` valid for that one path ([`streaming::token::Signer`]).
//!
//! Login attempts are limited per client address and per account name;
//! past the limit the answer is 429 with Retry-After, even for the right
//! password, until the window has passed (lockout).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use askama::Template;
use axum::extract::{Query as RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

use super::error::ApiError;
use super::guard::{self, Client};
use super::pages::{Page, render};
use super::routes::{self, Access};
use super::{AppState, unix_now};

pub const SESSION_COOKIE: &str = "riptide_session";
const SESSION_DAYS: i64 = 30;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;
pub const MAX_NAME: usize = 64;

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    /// Authenticated by the session cookie (so CSRF rules apply).
    pub via_cookie: bool,
    /// The API token of this request, if it came with one.
    pub token_id: Option<i64>,
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

pub async fn hash_password(app: &AppState, password: String) -> Result<String, ApiError> {
    let _permit = app
        .hash_permits
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Checks `password` against `hash`; with no hash (unknown user) a dummy
/// is checked so both cases take the same time.
pub async fn verify_password(app: &AppState, password: String, hash: Option<String>) -> bool {
    let Ok(_permit) = app.hash_permits.acquire().await else {
        return false;
    };
    let known = hash.is_some();
    let hash = hash.unwrap_or_else(|| app.dummy_hash.clone());
    let ok = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    ok && known
}

pub fn validate_new_account(
    name: &str,
    password: &str,
    confirm: Option<&str>,
) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("enter a user name".into());
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("user names are at most {MAX_NAME} characters"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("user names cannot contain control characters".into());
    }
    validate_password(password, confirm)
}

pub fn validate_password(password: &str, confirm: Option<&str>) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!(
            "choose a password of at least {MIN_PASSWORD} characters"
        ));
    }
    if password.chars().count() > MAX_PASSWORD {
        return Err(format!("passwords are at most {MAX_PASSWORD} characters"));
    }
    if confirm.is_some_and(|c| c != password) {
        return Err("the two passwords differ; type the same password twice".into());
    }
    Ok(())
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn session_cookie(value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie is ASCII")
}

/// Paths answered with HTML; the rest are JSON or media.
pub fn is_page(path: &str) -> bool {
    ![
        "/api/",
        "/stream/",
        "/media/",
        "/hls/",
        "/posters/",
        "/pretranscode/",
        "/static/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// Identifies the user (bearer token, session cookie, or a signed stream
/// URL), then enforces the route's access rule and CSRF.
pub async fn authn(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let access = routes::access(req.method(), &path);
    let unsafe_method = guard::is_unsafe(req.method());
    let origin = guard::same_origin(req.headers());
    let user = match identify(&app, req.headers()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if access == Access::Public {
        // Login CSRF: a foreign page must not post to login or setup.
        if unsafe_method && origin == Some(false) {
            return cross_origin(&path);
        }
        if let Some(u) = user {
            req.extensions_mut().insert(u);
        }
        return next.run(req).await;
    }
    let Some(user) = user else {
        if access == Access::UserOrSigned && signed_ok(&app, &req) {
            return next.run(req).await;
        }
        if is_page(&path) {
            let next_url = req
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string());
            let target = if req.method() == axum::http::Method::GET && next_url != "/" {
                format!("/login?next={}", url_escape(&next_url))
            } else {
                "/login".to_string()
            };
            return Redirect::to(&target).into_response();
        }
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "log in first: send the session cookie, or `Authorization: Bearer <API token>` (create one under Settings)",
        )
        .into_response();
    };
    if unsafe_method && user.via_cookie && origin != Some(true) {
        return cross_origin(&path);
    }
    if access == Access::Admin && !user.is_admin {
        let msg = "only an admin may do this; ask an admin of this server";
        if is_page(&path) {
            return render(
                StatusCode::FORBIDDEN,
                Page::message(&user, "Not allowed", msg),
            );
        }
        return ApiError::forbidden(msg).into_response();
    }
    req.extensions_mut().insert(user);
    next.run(req).await
}

fn cross_origin(path: &str) -> Response {
    guard::refuse(
        path,
        StatusCode::FORBIDDEN,
        "cross-site request refused: state changes must come from this server's own pages (Origin/Referer check)",
    )
}

async fn identify(app: &AppState, headers: &HeaderMap) -> Result<Option<CurrentUser>, ApiError> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with("rt_") && t.len() < 200);
        let Some(token) = token else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "malformed Authorization header: send `Authorization: Bearer rt_…`",
            ));
        };
        return match app.db.token_user(&sha256_hex(token)).await? {
            Some((u, token_id)) => Ok(Some(CurrentUser {
                id: u.id,
                name: u.name,
                is_admin: u.is_admin,
                via_cookie: false,
                token_id: Some(token_id),
            })),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown or revoked API token; create a new one under Settings",
            )),
        };
    }
    if let Some(sid) = cookie_value(headers, SESSION_COOKIE).filter(|s| s.len() == 64)
        && let Some(u) = app.db.session_user(&sha256_hex(sid), unix_now()).await?
    {
        return Ok(Some(CurrentUser {
            id: u.id,
            name: u.name,
            is_admin: u.is_admin,
            via_cookie: true,
            token_id: None,
        }));
    }
    Ok(None)
}

fn signed_ok(app: &AppState, req: &Request) -> bool {
    let Some(q) = req.uri().query() else {
        return false;
    };
    let token = q
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v);
    token.is_some_and(|t| {
        app.signer
            .verify(req.uri().path(), t, unix_now() as u64)
            .is_ok()
    })
}

pub fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `next` target that stays on this server.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub error: Option<String>,
    pub next: String,
    pub name: String,
    pub setup_open: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub error: Option<String>,
    pub name: String,
}

pub async fn login_page(
    State(app): State<AppState>,
    user: Option<Extension<CurrentUser>>,
    RawQuery(q): RawQuery<HashMap<String, String>>,
) -> Response {
    if user.is_some() {
        return Redirect::to(&safe_next(q.get("next").map(String::as_str))).into_response();
    }
    let setup_open = app.db.count_users().await.unwrap_or(1) == 0;
    render(
        StatusCode::OK,
        LoginPage {
            error: None,
            next: safe_next(q.get("next").map(String::as_str)),
            name: String::new(),
            setup_open,
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

pub async fn login(
    State(app): State<AppState>,
    Extension(client): Extension<Client>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return render(
            StatusCode::BAD_REQUEST,
            LoginPage {
                error: Some("the login form was incomplete; fill in both fields".into()),
                next: "/".into(),
                name: String::new(),
                setup_open: false,
            },
        );
    };
    let next = safe_next(form.next.as_deref());
    let name = form.username.trim().to_string();
    let page = |status, error: &str| {
        render(
            status,
            LoginPage {
                error: Some(error.to_string()),
                next: next.clone(),
                name: name.clone(),
                setup_open: false,
            },
        )
    };
    let ip_key = client.ip.to_string();
    let account_key = name.to_lowercase();
    let locked = app
        .login_ip_limiter
        .locked(&ip_key)
        .or_else(|| app.login_account_limiter.locked(&account_key));
    if let Some(wait) = locked {
        let mut r = page(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many failed logins; wait {} s and try again (or ask an admin to reset your password)",
                wait.as_secs().max(1)
            ),
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return r;
    }
    if name.is_empty()
        || form.password.is_empty()
        || form.password.chars().count() > MAX_PASSWORD
        || name.len() > 4 * MAX_NAME
    {
        return page(StatusCode::BAD_REQUEST, "enter your user name and password");
    }
    let user = match app.db.user_by_name(&name).await {
        Ok(u) => u,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let ok = verify_password(
        &app,
        form.password,
        user.as_ref().map(|u| u.password_hash.clone()),
    )
    .await;
    let Some(user) = user.filter(|_| ok) else {
        app.login_ip_limiter.failed(&ip_key);
        app.login_account_limiter.failed(&account_key);
        return page(StatusCode::UNAUTHORIZED, "wrong user name or password");
    };
    app.login_account_limiter.succeeded(&account_key);
    match start_session(&app, user.id, client).await {
        Ok(cookie) => {
            let mut r = Redirect::to(&next).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn start_session(
    app: &AppState,
    user_id: i64,
    client: Client,
) -> Result<HeaderValue, ApiError> {
    let sid = random_hex(32);
    app.db
        .create_session(
            &sha256_hex(&sid),
            user_id,
            unix_now() + SESSION_DAYS * 86400,
        )
        .await?;
    Ok(session_cookie(
        &sid,
        SESSION_DAYS * 86400,
        app.cfg.http.secure_cookies || client.https,
    ))
}

pub async fn logout(
    State(app): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
) -> Response {
    if let Some(sid) = cookie_value(&headers, SESSION_COOKIE) {
        let _ = app.db.delete_session(&sha256_hex(sid)).await;
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, app.cfg.http.secure_cookies || client.https),
    );
    r
}

/// Why the setup page cannot be used now, if so.
async fn setup_refusal(app: &AppState, client: &Client) -> Option<(StatusCode, String)> {
    match app.db.count_users().await {
        Ok(0) => {}
        Ok(_) => {
            return Some((
                StatusCode::NOT_FOUND,
                "this server is set up already; log in instead".into(),
            ));
        }
        Err(e) => return Some((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
    if !client.local {
        return Some((
            StatusCode::FORBIDDEN,
            format!(
                "the first account can only be created from the server itself: open http://{}/setup on that machine, or start the server with RIPTIDE_ADMIN_PASSWORD set",
                app.cfg.listen
            ),
        ));
    }
    None
}

pub async fn setup_page(
    State(app): State<AppState>,
    Extension(client): Extension<Client>,
) -> Response {
    if let Some((status, msg)) = setup_refusal(&app, &client).await {
        if status == StatusCode::NOT_FOUND {
            return Redirect::to("/login").into_response();
        }
        return render(status, Page::public_message("Setup", &msg));
    }
    render(
        StatusCode::OK,
        SetupPage {
            error: None,
            name: "admin".into(),
        },
    )
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn setup(
    State(app): State<AppState>,
    Extension(client): Extension<Client>,
    form: Result<Form<SetupForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let _one_at_a_time = app.setup_lock.lock().await;
    if let Some((status, msg)) = setup_refusal(&app, &client).await {
        return render(status, Page::public_message("Setup", &msg));
    }
    let Ok(Form(form)) = form else {
        return render(
            StatusCode::BAD_REQUEST,
            SetupPage {
                error: Some("the form was incomplete; fill in every field".into()),
                name: "admin".into(),
            },
        );
    };
    let name = form.username.trim().to_string();
    if let Err(e) = validate_new_account(&name, &form.password, Some(&form.confirm)) {
        return render(
            StatusCode::BAD_REQUEST,
            SetupPage {
                error: Some(e),
                name,
            },
        );
    }
    let hash = match hash_password(&app, form.password).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let id = match app.db.create_user(&name, &hash, true).await {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    tracing::info!(user = %name, "admin account created on the setup page");
    match start_session(&app, id, client).await {
        Ok(cookie) => {
            let mut r = Redirect::to("/").into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(e) => e.into_response(),
    }
}

/// First start with `RIPTIDE_ADMIN_PASSWORD`: creates the `admin` account
/// when no account exists. Never a default password.
pub async fn ensure_admin(app: &AppState) -> anyhow::Result<()> {
    let Some(pw) = app.cfg.admin_password.clone() else {
        if app.db.count_users().await? == 0 {
            eprintln!(
                "riptide: no account yet: open http://{}/setup on this machine to create the admin (or set RIPTIDE_ADMIN_PASSWORD)",
                app.cfg.listen
            );
        }
        return Ok(());
    };
    if app.db.count_users().await? > 0 {
        return Ok(());
    }
    validate_password(&pw, None).map_err(|e| anyhow::anyhow!("RIPTIDE_ADMIN_PASSWORD: {e}"))?;
    let hash = hash_password(app, pw)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    app.db.create_user("admin", &hash, true).await?;
    eprintln!("riptide: created the account `admin` with the password from RIPTIDE_ADMIN_PASSWORD");
    Ok(())
}

/// Purges expired sessions now and then.
pub async fn purge_loop(app: AppState) {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let _ = app.db.purge_sessions(unix_now()).await;
    }
}
