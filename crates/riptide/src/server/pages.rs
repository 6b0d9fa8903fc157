//! Server-rendered pages (askama templates in `web/templates/`), their
//! form handlers, and the static assets (compiled into the binary, so the
//! server needs no files beside it and nothing comes from a CDN).
//!
//! Forms post back and redirect (post/redirect/get), so every page works
//! without JavaScript; `web/static/app.js` adds live download progress
//! (Server-Sent Events from `/api/v1/events`) and the player.

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Multipart, Query as RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::collections::HashMap;

use super::api::{self, LibraryParams};
use super::auth::{self, CurrentUser};
use super::downloads::{NewTorrent, TorrentView};
use super::error::{ApiError, Path};
use super::{AppState, media};
use crate::units;

pub fn render<T: Template>(status: StatusCode, t: T) -> Response {
    match t.render() {
        Ok(html) => (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(e) => ApiError::internal(format!("page template failed: {e}")).into_response(),
    }
}

/// The navigation bar's view of the user.
pub struct Nav {
    pub user: String,
    pub is_admin: bool,
    pub active: &'static str,
}

impl Nav {
    fn of(u: &CurrentUser, active: &'static str) -> Nav {
        Nav {
            user: u.name.clone(),
            is_admin: u.is_admin,
            active,
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub nav: Option<Nav>,
    pub title: String,
    pub message: String,
    pub is_error: bool,
}

/// Short pages that only say something.
pub struct Page;

impl Page {
    pub fn message(u: &CurrentUser, title: &str, message: &str) -> MessagePage {
        MessagePage {
            nav: Some(Nav::of(u, "")),
            title: title.into(),
            message: message.into(),
            is_error: true,
        }
    }
    pub fn public_message(title: &str, message: &str) -> MessagePage {
        MessagePage {
            nav: None,
            title: title.into(),
            message: message.into(),
            is_error: false,
        }
    }
    /// An error before anyone is known (limits, Host check).
    pub fn error(title: &str, message: &str) -> MessagePage {
        MessagePage {
            is_error: true,
            ..Page::public_message(title, message)
        }
    }
}

pub async fn not_found(user: Option<Extension<CurrentUser>>, uri: axum::http::Uri) -> Response {
    if !auth::is_page(uri.path()) {
        return ApiError::not_found(format!("no such resource: {}", uri.path())).into_response();
    }
    let page = match user {
        Some(Extension(u)) => Page::message(&u, "Not found", "There is no page at this address."),
        None => Page::public_message("Not found", "There is no page at this address."),
    };
    render(StatusCode::NOT_FOUND, page)
}

// ---------------------------------------------------------------- static

struct Asset {
    name: &'static str,
    ctype: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        ctype: "text/css; charset=utf-8",
        body: include_bytes!("../../../../web/static/style.css"),
    },
    Asset {
        name: "app.js",
        ctype: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../../web/static/app.js"),
    },
    Asset {
        name: "icon.svg",
        ctype: "image/svg+xml",
        body: include_bytes!("../../../../web/static/icon.svg"),
    },
];

const VENDOR: &[Asset] = &[Asset {
    name: "hls.min.js",
    ctype: "text/javascript; charset=utf-8",
    body: include_bytes!("../../../../web/vendor/hls.js/hls.min.js"),
}];

fn asset(list: &[Asset], name: &str) -> Response {
    match list.iter().find(|a| a.name == name) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.ctype),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            a.body,
        )
            .into_response(),
        None => ApiError::not_found("no such file").into_response(),
    }
}

pub async fn static_file(Path(name): Path<String>) -> Response {
    asset(ASSETS, &name)
}

pub async fn vendor_file(Path(name): Path<String>) -> Response {
    asset(VENDOR, &name)
}

// ---------------------------------------------------------------- library

pub struct FilmCard {
    pub id: i64,
    pub title: String,
    pub subtitle: String,
    pub initials: String,
    pub poster: Option<String>,
}

#[derive(Template)]
#[template(path = "library.html")]
pub struct LibraryPage {
    pub nav: Nav,
    pub q: String,
    pub films: Vec<FilmCard>,
    pub error: Option<String>,
}

fn initials(title: &str) -> String {
    title
        .split_whitespace()
        .filter_map(|w| w.chars().find(|c| c.is_alphanumeric()))
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}

fn duration_text(secs: Option<f64>) -> String {
    match secs {
        Some(s) if s >= 3600.0 => format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        ),
        Some(s) if s >= 60.0 => format!("{} min", (s / 60.0).round() as u64),
        Some(s) => format!("{} s", s.round() as u64),
        None => String::new(),
    }
}

pub async fn library(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    RawQuery(q): RawQuery<HashMap<String, String>>,
) -> Response {
    let text = q.get("q").cloned().unwrap_or_default();
    let params = LibraryParams {
        q: Some(text.clone()),
        year: None,
        codec: None,
    };
    let (films, error, status) = match api::films(&app, &params).await {
        Ok(f) => (f, None, StatusCode::OK),
        Err(e) => (Vec::new(), Some(e.message), e.status),
    };
    let films = films
        .into_iter()
        .map(|f| {
            let mut sub = Vec::new();
            if let Some(y) = f.year {
                sub.push(y.to_string());
            }
            if let (Some(s), Some(e)) = (f.season, f.episode) {
                sub.push(format!("S{s:02}E{e:02}"));
            }
            let d = duration_text(f.duration);
            if !d.is_empty() {
                sub.push(d);
            }
            FilmCard {
                id: f.id,
                initials: initials(&f.title),
                title: f.title,
                subtitle: sub.join(" · "),
                poster: f.poster,
            }
        })
        .collect();
    render(
        status,
        LibraryPage {
            nav: Nav::of(&u, "library"),
            q: text,
            films,
            error,
        },
    )
}

#[derive(Template)]
#[template(path = "film.html")]
pub struct FilmPage {
    pub nav: Nav,
    pub id: i64,
    pub title: String,
    pub year: String,
    pub initials: String,
    pub poster: Option<String>,
    pub facts: Vec<(String, String)>,
    pub resume: Option<String>,
}

fn parse_id(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|i| *i > 0)
}

pub async fn film(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return render(
            StatusCode::NOT_FOUND,
            Page::message(&u, "Not found", "There is no such film."),
        );
    };
    let f = match api::film_details(&app, &u, id).await {
        Ok(f) => f,
        Err(e) => return render(e.status, Page::message(&u, "Film", &e.message)),
    };
    let mut facts = Vec::new();
    let d = duration_text(f.duration);
    if !d.is_empty() {
        facts.push(("Length".to_string(), d));
    }
    if let (Some(w), Some(h)) = (f.width, f.height) {
        facts.push(("Picture".into(), format!("{w}×{h}")));
    }
    let codecs: Vec<String> = [f.video_codec.as_deref(), f.audio_codec.as_deref()]
        .into_iter()
        .flatten()
        .map(streaming::decision::display_codec)
        .collect();
    if !codecs.is_empty() {
        facts.push(("Codecs".into(), codecs.join(" / ")));
    }
    if let Some(c) = &f.container {
        facts.push(("Container".into(), c.clone()));
    }
    if let Some(s) = &f.source {
        facts.push(("Source".into(), s.clone()));
    }
    facts.push(("Size".into(), units::bytes(f.size.max(0) as u64)));
    render(
        StatusCode::OK,
        FilmPage {
            nav: Nav::of(&u, "library"),
            id,
            initials: initials(&f.title),
            year: f.year.map(|y| y.to_string()).unwrap_or_default(),
            title: f.title,
            poster: f.poster,
            facts,
            resume: f
                .position_secs
                .filter(|p| *p > 5.0)
                .map(|p| units::duration(std::time::Duration::from_secs_f64(p))),
        },
    )
}

#[derive(Template)]
#[template(path = "player.html")]
pub struct PlayerPage {
    pub nav: Nav,
    pub id: i64,
    pub title: String,
    pub direct_url: String,
    pub hls_url: String,
    pub decision: String,
    pub reasons: Vec<String>,
    pub external_url: String,
    pub start_at: String,
}

pub async fn player(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return render(
            StatusCode::NOT_FOUND,
            Page::message(&u, "Not found", "There is no such film."),
        );
    };
    let details = match api::film_details(&app, &u, id).await {
        Ok(f) => f,
        Err(e) => return render(e.status, Page::message(&u, "Play", &e.message)),
    };
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let plan = match media::plan(&app, id, ua, q.get("profile").map(String::as_str)).await {
        Ok(p) => p,
        Err(e) => return render(e.status, Page::message(&u, &details.title, &e.message)),
    };
    let start = if q.contains_key("resume") {
        details.position_secs.unwrap_or(0.0)
    } else {
        0.0
    };
    render(
        StatusCode::OK,
        PlayerPage {
            nav: Nav::of(&u, "library"),
            id,
            title: details.title,
            direct_url: plan.direct_url.unwrap_or_default(),
            hls_url: plan.hls_url.unwrap_or_default(),
            decision: plan.decision.replace('_', " "),
            reasons: plan.reasons,
            external_url: plan.external_url,
            start_at: format!("{start:.1}"),
        },
    )
}

// ---------------------------------------------------------------- downloads

pub struct TorrentRow {
    pub info_hash: String,
    pub name: String,
    pub state: String,
    pub percent: String,
    pub size: String,
    pub down: String,
    pub up: String,
    pub peers: String,
    pub eta: String,
    pub paused: bool,
    pub error: String,
}

fn row(v: &TorrentView) -> TorrentRow {
    TorrentRow {
        info_hash: v.info_hash.clone(),
        name: v.name.clone(),
        state: v.state.clone(),
        percent: format!("{:.1}", v.progress * 100.0),
        size: if v.total_bytes > 0 {
            units::bytes(v.total_bytes)
        } else {
            "size unknown".into()
        },
        down: units::rate(v.download_rate),
        up: units::rate(v.upload_rate),
        peers: format!(
            "{} {} ({} {})",
            v.peers,
            if v.peers == 1 { "peer" } else { "peers" },
            v.seeds,
            if v.seeds == 1 { "seed" } else { "seeds" }
        ),
        eta: v
            .eta_secs
            .filter(|_| v.state == "downloading")
            .map(|s| units::duration(std::time::Duration::from_secs(s)))
            .unwrap_or_else(|| "–".into()),
        paused: v.state == "paused",
        error: v.error.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "downloads.html")]
pub struct DownloadsPage {
    pub nav: Nav,
    pub torrents: Vec<TorrentRow>,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub magnet: String,
}

fn downloads_page(
    app: &AppState,
    u: &CurrentUser,
    error: Option<String>,
    notice: Option<String>,
    magnet: String,
) -> DownloadsPage {
    DownloadsPage {
        nav: Nav::of(u, "downloads"),
        torrents: app.downloads.list().iter().map(row).collect(),
        error,
        notice,
        magnet,
    }
}

pub async fn downloads(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    RawQuery(q): RawQuery<HashMap<String, String>>,
) -> Response {
    let notice = q
        .get("added")
        .map(|n| format!("Added “{n}”."))
        .or_else(|| q.get("removed").map(|_| "Removed.".to_string()));
    render(
        StatusCode::OK,
        downloads_page(&app, &u, None, notice, String::new()),
    )
}

/// The add form: a magnet link, or a .torrent upload (multipart).
pub async fn add_torrent(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let fail = |status: StatusCode, msg: String, magnet: String| {
        render(status, downloads_page(&app, &u, Some(msg), None, magnet))
    };
    let Ok(mut multipart) = multipart else {
        return fail(
            StatusCode::BAD_REQUEST,
            "the form did not arrive as a file upload; reload the page and try again".into(),
            String::new(),
        );
    };
    let mut magnet = String::new();
    let mut file: Option<Vec<u8>> = None;
    let mut magnet_not_text = false;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let Ok(bytes) = field.bytes().await else {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        "the upload was cut off; try again".into(),
                        magnet,
                    );
                };
                match name.as_str() {
                    "magnet" => match String::from_utf8(bytes.to_vec()) {
                        Ok(s) => magnet = s,
                        Err(_) => magnet_not_text = true,
                    },
                    "torrent" if !bytes.is_empty() => file = Some(bytes.to_vec()),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the form could not be read ({}); reload the page and try again",
                        e.body_text()
                    ),
                    magnet,
                );
            }
        }
    }
    if magnet_not_text {
        return fail(
            StatusCode::BAD_REQUEST,
            "the magnet link contains bytes that are not text (UTF-8); copy it again from its source".into(),
            String::new(),
        );
    }
    let input = match (magnet.trim().is_empty(), file) {
        (true, Some(f)) => NewTorrent::File(f),
        (false, None) => NewTorrent::Magnet(magnet.clone()),
        (false, Some(_)) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "give either a magnet link or a .torrent file, not both".into(),
                magnet,
            );
        }
        (true, None) => NewTorrent::Magnet(String::new()),
    };
    // A huge paste is not echoed back into the page.
    let keep = if magnet.len() <= 8192 {
        magnet.clone()
    } else {
        String::new()
    };
    match app
        .downloads
        .add(input, app.cfg.http.max_torrent_bytes, false)
        .await
    {
        Ok(v) => {
            Redirect::to(&format!("/downloads?added={}", auth::url_escape(&v.name))).into_response()
        }
        Err(e) => {
            let e = api::add_error(e);
            fail(e.status, e.message, keep)
        }
    }
}

async fn torrent_action(app: &AppState, u: &CurrentUser, r: Result<(), ApiError>) -> Response {
    match r {
        Ok(()) => Redirect::to("/downloads").into_response(),
        Err(e) => render(
            e.status,
            downloads_page(app, u, Some(e.message), None, String::new()),
        ),
    }
}

pub async fn pause(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(ih): Path<String>,
) -> Response {
    let r = app
        .downloads
        .pause(&ih)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()));
    torrent_action(&app, &u, r).await
}

pub async fn resume(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(ih): Path<String>,
) -> Response {
    let r = app
        .downloads
        .resume(&ih)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e.to_string()));
    torrent_action(&app, &u, r).await
}

#[derive(Deserialize)]
pub struct RemoveForm {
    delete_data: Option<String>,
}

pub async fn remove(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(ih): Path<String>,
    form: Result<Form<RemoveForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let delete = form.is_ok_and(|f| f.delete_data.is_some());
    match app.downloads.remove(&ih, delete).await {
        Ok(()) => Redirect::to("/downloads?removed=1").into_response(),
        Err(e) => render(
            StatusCode::CONFLICT,
            downloads_page(&app, &u, Some(e.to_string()), None, String::new()),
        ),
    }
}

// ---------------------------------------------------------------- settings

pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: &'static str,
    pub me: bool,
}

pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub nav: Nav,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub new_token: Option<String>,
    pub limits: Vec<(String, String)>,
    pub paths: Vec<(String, String)>,
    pub users: Vec<UserRow>,
    pub tokens: Vec<TokenRow>,
}

async fn settings_page(
    app: &AppState,
    u: &CurrentUser,
    error: Option<String>,
    notice: Option<String>,
    new_token: Option<String>,
) -> SettingsPage {
    let c = &app.cfg;
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    let limits = vec![
        (
            "Login attempts per address".into(),
            format!(
                "{} per {}",
                c.limits.login_attempts_per_ip,
                secs(c.limits.login_window)
            ),
        ),
        (
            "Login attempts per account".into(),
            format!(
                "{} per {}",
                c.limits.login_attempts_per_account,
                secs(c.limits.login_window)
            ),
        ),
        (
            "API requests per client".into(),
            format!("{} per minute", c.limits.api_requests_per_minute),
        ),
        (
            "HTTP connections".into(),
            format!(
                "{} ({} per address)",
                c.http.max_connections, c.http.max_connections_per_ip
            ),
        ),
        (
            "Header / body timeout".into(),
            format!(
                "{} / {}",
                secs(c.http.header_timeout),
                secs(c.http.body_timeout)
            ),
        ),
        (
            "Largest .torrent".into(),
            units::bytes(c.http.max_torrent_bytes as u64),
        ),
        (
            "Peers per torrent".into(),
            c.engine.max_peers_per_torrent.to_string(),
        ),
        (
            "Peer connections".into(),
            c.engine.max_connections.to_string(),
        ),
    ];
    let lib = app.library.config();
    let paths = vec![
        ("Data folder".into(), c.data_dir.display().to_string()),
        (
            "Config file".into(),
            c.config_file
                .as_ref()
                .map_or("none (defaults and environment)".into(), |p| {
                    p.display().to_string()
                }),
        ),
        (
            "Downloads".into(),
            lib.downloads_dir().display().to_string(),
        ),
        ("Library".into(), lib.library_dir().display().to_string()),
        (
            "Database".into(),
            match &c.database_url {
                Some(_) => "PostgreSQL".into(),
                None => lib.database_target(),
            },
        ),
        (
            "Peer port".into(),
            app.downloads.session().listen_addr().port().to_string(),
        ),
    ];
    let users = if u.is_admin {
        app.db
            .users()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|x| UserRow {
                me: x.id == u.id,
                id: x.id,
                name: x.name,
                role: if x.is_admin { "admin" } else { "user" },
            })
            .collect()
    } else {
        Vec::new()
    };
    let tokens = app
        .db
        .api_tokens(u.id)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            last_used: t.last_used_at.map_or("never".into(), |at| {
                let ago = (super::unix_now() - at).max(0) as u64;
                format!(
                    "{} ago",
                    units::duration(std::time::Duration::from_secs(ago))
                )
            }),
        })
        .collect();
    SettingsPage {
        nav: Nav::of(u, "settings"),
        error,
        notice,
        new_token,
        limits,
        paths,
        users,
        tokens,
    }
}

pub async fn settings(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
) -> Response {
    render(
        StatusCode::OK,
        settings_page(&app, &u, None, None, None).await,
    )
}

async fn settings_result(app: &AppState, u: &CurrentUser, r: Result<String, ApiError>) -> Response {
    match r {
        Ok(notice) => render(
            StatusCode::OK,
            settings_page(app, u, None, Some(notice), None).await,
        ),
        Err(e) => render(
            e.status,
            settings_page(app, u, Some(e.message), None, None).await,
        ),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn change_password(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    form: Result<Form<PasswordForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let r = async {
        let Form(f) = form
            .map_err(|_| ApiError::bad_request("the form was incomplete; fill in every field"))?;
        let hash = app.db.user(u.id).await?.map(|x| x.password_hash);
        if !auth::verify_password(&app, f.current, hash).await {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the current password is wrong",
            ));
        }
        auth::validate_password(&f.password, Some(&f.confirm)).map_err(ApiError::bad_request)?;
        let h = auth::hash_password(&app, f.password).await?;
        app.db.set_password_hash(u.id, &h).await?;
        Ok("Password changed.".to_string())
    }
    .await;
    settings_result(&app, &u, r).await
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

pub async fn create_token(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let name = form.map(|f| f.0.name).unwrap_or_default();
    match api::new_token(&app, &u, &name).await {
        Ok(t) => render(
            StatusCode::OK,
            settings_page(&app, &u, None, None, Some(t.token)).await,
        ),
        Err(e) => render(
            e.status,
            settings_page(&app, &u, Some(e.message), None, None).await,
        ),
    }
}

pub async fn delete_token(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let id = id
            .parse::<i64>()
            .map_err(|_| ApiError::not_found("no such token"))?;
        if app.db.delete_api_token(u.id, id).await? {
            Ok("Token revoked.".to_string())
        } else {
            Err(ApiError::not_found("no such token"))
        }
    }
    .await;
    settings_result(&app, &u, r).await
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    role: Option<String>,
}

pub async fn create_user(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    form: Result<Form<UserForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let r = async {
        let Form(f) = form
            .map_err(|_| ApiError::bad_request("the form was incomplete; fill in every field"))?;
        let v = api::new_user(
            &app,
            &f.name,
            f.password,
            f.role.as_deref() == Some("admin"),
        )
        .await?;
        Ok(format!("Account “{}” created.", v.name))
    }
    .await;
    settings_result(&app, &u, r).await
}

pub async fn delete_user(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Response {
    let r = async {
        let id = id
            .parse::<i64>()
            .map_err(|_| ApiError::not_found("no such user"))?;
        api::remove_user(&app, &u, id).await?;
        Ok("Account deleted.".to_string())
    }
    .await;
    settings_result(&app, &u, r).await
}

// ---------------------------------------------------------------- status

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub nav: Nav,
    pub rows: Vec<(String, String)>,
    pub streams: Vec<(String, String)>,
    pub jobs: Vec<(String, String)>,
}

pub async fn status(State(app): State<AppState>, Extension(u): Extension<CurrentUser>) -> Response {
    let s = api::status_view(&app).await;
    let rows = vec![
        ("Version".into(), s.version),
        (
            "Up for".into(),
            units::duration(std::time::Duration::from_secs(s.uptime_secs)),
        ),
        ("Torrents".into(), s.torrents.to_string()),
        ("Download".into(), units::rate(s.download_rate)),
        ("Upload".into(), units::rate(s.upload_rate)),
        ("Peers".into(), s.peers.to_string()),
        ("Peer port".into(), s.peer_port.to_string()),
        ("Films in the library".into(), s.library_films.to_string()),
        ("Database".into(), s.database),
        ("HLS sessions".into(), s.hls_sessions.to_string()),
        (
            "Transcoders".into(),
            format!(
                "{} running of {}",
                s.transcodes_running, s.transcode_workers
            ),
        ),
        (
            "Pre-transcode queue".into(),
            s.pretranscode_queued
                .map_or("off".into(), |q| format!("{q} waiting")),
        ),
    ];
    let mut streams = Vec::new();
    for h in app.downloads.session().torrents() {
        let name = h.stats().name;
        for st in h.streams() {
            streams.push((
                format!("{name} #{}", st.file),
                format!(
                    "{:.0} s buffered, {} underruns, {} seeks",
                    st.buffered_ahead_secs, st.underruns, st.seeks
                ),
            ));
        }
    }
    let jobs = app
        .pretranscoder
        .as_ref()
        .map(|p| p.status().jobs)
        .unwrap_or_default()
        .into_iter()
        .map(|j| {
            let name = j
                .film
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            use streaming::pretranscode::JobState;
            let what = match &j.state {
                JobState::Queued => "waiting".to_string(),
                JobState::Running => format!(
                    "{:.0} of {:.0} s, {:.1}× realtime",
                    j.progress_secs,
                    j.duration_secs.unwrap_or(0.0),
                    j.speed
                ),
                JobState::Done {
                    realtime_factor, ..
                } => format!("done, {realtime_factor:.1}× realtime"),
                JobState::Skipped { reason } => format!("not needed: {reason}"),
                JobState::Failed { error } => format!("failed: {error}"),
                JobState::Cancelled => "cancelled".to_string(),
            };
            (name, what)
        })
        .collect();
    render(
        StatusCode::OK,
        StatusPage {
            nav: Nav::of(&u, "status"),
            rows,
            streams,
            jobs,
        },
    )
}
