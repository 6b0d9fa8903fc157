//! The REST API (JSON) behind the pages, and its OpenAPI document
//! (generated from these handlers by utoipa, served at
//! `/api/openapi.json`). Every error is `{"error": "…"}`.
//!
//! Authentication: a session cookie (browsers) or `Authorization: Bearer
//! rt_…` (scripts, the `riptide` CLI client).

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::AppState;
use super::auth::{self, CurrentUser};
use super::downloads::{ActionError, AddError, NewTorrent, TorrentView};
use super::error::{ApiError, ErrorBody, Json, Path, Query};
use super::media::{self, PlaybackPlan};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Riptide API",
        description = "Torrents, library and playback of a Riptide server. Authenticate with `Authorization: Bearer rt_…` (Settings → API tokens); the web pages use the same API with their session cookie (state changes then need a same-origin `Origin` header). Every error is `{\"error\": \"…\"}`.",
        version = "1"
    ),
    paths(
        me, status, events, list_torrents, add_torrent, get_torrent, remove_torrent,
        pause_torrent, resume_torrent, torrent_peers, list_library, get_film, playback,
        set_progress, list_tokens, create_token, delete_token, list_users, create_user,
        delete_user
    ),
    components(schemas(
        ErrorBody, TorrentView, AddTorrentBody, PeerView, FilmView, FilmDetails, PlaybackPlan,
        ProgressBody, Me, StatusView, TokenView, NewToken, CreateTokenBody, UserView,
        CreateUserBody
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme,
        };
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::SESSION_COOKIE))),
        );
    }
}

pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
        .into_response()
}

fn action_error(e: ActionError) -> ApiError {
    match e {
        ActionError::NotFound(_) => ApiError::not_found(e.to_string()),
        ActionError::Busy(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        ActionError::Failed(_) => ApiError::internal(e),
    }
}

pub fn add_error(e: AddError) -> ApiError {
    let status = match &e {
        AddError::Duplicate(_) => StatusCode::CONFLICT,
        AddError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        AddError::Io { .. } | AddError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.to_string())
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
}

/// Who the caller is.
#[utoipa::path(get, path = "/api/v1/me", responses(
    (status = 200, body = Me), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn me(Extension(u): Extension<CurrentUser>) -> Json<Me> {
    Json(Me {
        id: u.id,
        name: u.name,
        is_admin: u.is_admin,
    })
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub version: String,
    pub uptime_secs: u64,
    pub torrents: usize,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub peers: usize,
    pub peer_port: u16,
    pub library_films: usize,
    pub hls_sessions: usize,
    pub transcode_workers: usize,
    pub transcodes_running: usize,
    pub pretranscode_queued: Option<usize>,
    pub database: String,
}

pub async fn status_view(app: &AppState) -> StatusView {
    let s = app.downloads.session().stats();
    let pool = app.pool.status();
    StatusView {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: app.started.elapsed().as_secs(),
        torrents: s.torrents,
        download_rate: s.download_rate,
        upload_rate: s.upload_rate,
        peers: s.peers,
        peer_port: app.downloads.session().listen_addr().port(),
        library_films: app.db.list().await.map_or(0, |l| l.len()),
        hls_sessions: app.hls.sessions(),
        transcode_workers: pool.workers,
        transcodes_running: pool.running,
        pretranscode_queued: app.pretranscoder.as_ref().map(|p| p.status().queued),
        database: match app.db.backend() {
            media_library::Backend::Sqlite => "SQLite".into(),
            media_library::Backend::Postgres => "PostgreSQL".into(),
        },
    }
}

/// Server, engine and library figures.
#[utoipa::path(get, path = "/api/v1/status", responses(
    (status = 200, body = StatusView), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn status(State(app): State<AppState>) -> Json<StatusView> {
    Json(status_view(&app).await)
}

/// Live torrent list: a Server-Sent Events stream with one `torrents`
/// event (a JSON array of torrents) per second.
#[utoipa::path(get, path = "/api/v1/events", responses(
    (status = 200, description = "text/event-stream of `torrents` events", content_type = "text/event-stream", body = String),
    (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn events(State(app): State<AppState>) -> Response {
    let stream = futures_util::stream::unfold((app, true), |(app, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let list = app.downloads.list();
        let ev = Event::default()
            .event("torrents")
            .json_data(&list)
            .unwrap_or_else(|_| Event::default().comment("serialization failed"));
        Some((Ok::<_, std::convert::Infallible>(ev), (app, false)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Every torrent.
#[utoipa::path(get, path = "/api/v1/torrents", responses(
    (status = 200, body = [TorrentView]), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_torrents(State(app): State<AppState>) -> Json<Vec<TorrentView>> {
    Json(app.downloads.list())
}

/// A magnet link or a .torrent file (base64).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTorrentBody {
    /// `magnet:?xt=urn:btih:…`
    #[schema(
        example = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=Example",
        max_length = 65536
    )]
    pub magnet: Option<String>,
    /// The .torrent file, base64-encoded.
    #[schema(max_length = 16777216)]
    pub torrent_base64: Option<String>,
    /// Add without starting.
    #[serde(default)]
    pub paused: bool,
}

/// Adds a torrent.
#[utoipa::path(post, path = "/api/v1/torrents", request_body = AddTorrentBody, responses(
    (status = 201, body = TorrentView),
    (status = 400, body = ErrorBody, description = "malformed magnet or torrent"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "already added"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn add_torrent(
    State(app): State<AppState>,
    Json(body): Json<AddTorrentBody>,
) -> Result<(StatusCode, Json<TorrentView>), ApiError> {
    let input = match (body.magnet, body.torrent_base64) {
        (Some(m), None) => NewTorrent::Magnet(m),
        (None, Some(b)) => NewTorrent::File(
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| {
                    ApiError::bad_request(format!("torrent_base64 is not valid base64: {e}"))
                })?,
        ),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `magnet` or `torrent_base64`, not both",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("give `magnet` or `torrent_base64`")),
    };
    let v = app
        .downloads
        .add(input, app.cfg.http.max_torrent_bytes, body.paused)
        .await
        .map_err(add_error)?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// One torrent.
#[utoipa::path(get, path = "/api/v1/torrents/{info_hash}", params(("info_hash" = String, Path)), responses(
    (status = 200, body = TorrentView), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn get_torrent(
    State(app): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Json<TorrentView>, ApiError> {
    app.downloads
        .get(&info_hash)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no torrent with info-hash {info_hash}")))
}

#[derive(Deserialize, IntoParams)]
pub struct RemoveParams {
    /// Also delete the downloaded (or imported) files.
    #[serde(default)]
    pub delete_data: bool,
}

/// Removes a torrent (admins only).
#[utoipa::path(delete, path = "/api/v1/torrents/{info_hash}", params(("info_hash" = String, Path), RemoveParams), responses(
    (status = 204, description = "removed"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
    (status = 429, body = ErrorBody)))]
pub async fn remove_torrent(
    State(app): State<AppState>,
    Path(info_hash): Path<String>,
    Query(p): Query<RemoveParams>,
) -> Result<StatusCode, ApiError> {
    app.downloads
        .remove(&info_hash, p.delete_data)
        .await
        .map_err(action_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pauses a torrent.
#[utoipa::path(post, path = "/api/v1/torrents/{info_hash}/pause", params(("info_hash" = String, Path)), responses(
    (status = 200, body = TorrentView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn pause_torrent(
    State(app): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Json<TorrentView>, ApiError> {
    app.downloads
        .pause(&info_hash)
        .await
        .map(Json)
        .map_err(action_error)
}

/// Resumes a torrent.
#[utoipa::path(post, path = "/api/v1/torrents/{info_hash}/resume", params(("info_hash" = String, Path)), responses(
    (status = 200, body = TorrentView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn resume_torrent(
    State(app): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Json<TorrentView>, ApiError> {
    app.downloads
        .resume(&info_hash)
        .await
        .map(Json)
        .map_err(action_error)
}

#[derive(Serialize, ToSchema)]
pub struct PeerView {
    pub addr: String,
    pub client: Option<String>,
    pub seed: bool,
    pub download_rate: u64,
    pub upload_rate: u64,
}

/// Connected peers of a torrent.
#[utoipa::path(get, path = "/api/v1/torrents/{info_hash}/peers", params(("info_hash" = String, Path)), responses(
    (status = 200, body = [PeerView]), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn torrent_peers(
    State(app): State<AppState>,
    Path(info_hash): Path<String>,
) -> Result<Json<Vec<PeerView>>, ApiError> {
    let h = app.downloads.torrent(&info_hash).ok_or_else(|| {
        ApiError::not_found(format!("no running torrent with info-hash {info_hash}"))
    })?;
    Ok(Json(
        h.peers()
            .into_iter()
            .map(|p| PeerView {
                addr: p.addr.to_string(),
                client: p.client,
                seed: p.seed,
                download_rate: p.download_rate,
                upload_rate: p.upload_rate,
            })
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct FilmView {
    /// The file's id (use it for playback).
    pub id: i64,
    pub title: String,
    pub year: Option<i64>,
    pub tmdb_id: Option<i64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub duration: Option<f64>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
    /// `/posters/{tmdb_id}.jpg` when a poster is cached.
    pub poster: Option<String>,
}

#[derive(Deserialize, IntoParams)]
pub struct LibraryParams {
    /// Title words (prefixes; case and accents ignored).
    pub q: Option<String>,
    pub year: Option<i64>,
    /// h264, hevc, aac, dts, …
    pub codec: Option<String>,
}

/// Films that are being pre-transcoded output (`*.riptide.mp4`) are not
/// separate films.
fn is_derived(path: &str) -> bool {
    path.contains(".riptide.") || path.contains(".riptide-hls")
}

pub async fn films(app: &AppState, p: &LibraryParams) -> Result<Vec<FilmView>, ApiError> {
    let q = p.q.as_deref().unwrap_or("").trim();
    if q.len() > 200 {
        return Err(ApiError::bad_request(
            "the search is longer than 200 characters; shorten it",
        ));
    }
    let entries = if q.is_empty() && p.year.is_none() && p.codec.is_none() {
        app.db.list().await?
    } else {
        app.db
            .search(&media_library::SearchQuery {
                text: q.to_string(),
                year: p.year,
                codec: p.codec.clone().filter(|c| !c.trim().is_empty()),
            })
            .await?
    };
    let posters = app.library.config().posters_dir();
    let mut out = Vec::new();
    for e in entries.into_iter().filter(|e| !is_derived(&e.file_path)) {
        let poster = match e.tmdb_id {
            Some(t)
                if tokio::fs::try_exists(posters.join(format!("{t}.jpg")))
                    .await
                    .unwrap_or(false) =>
            {
                Some(format!("/posters/{t}.jpg"))
            }
            _ => None,
        };
        out.push(FilmView {
            id: e.id,
            title: e.title,
            year: e.year,
            tmdb_id: e.tmdb_id,
            video_codec: e.video_codec,
            audio_codec: e.audio_codec,
            duration: e.duration,
            season: e.season,
            episode: e.episode,
            poster,
        });
    }
    Ok(out)
}

/// The library: every film, or those matching a search.
#[utoipa::path(get, path = "/api/v1/library", params(LibraryParams), responses(
    (status = 200, body = [FilmView]), (status = 400, body = ErrorBody),
    (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_library(
    State(app): State<AppState>,
    Query(p): Query<LibraryParams>,
) -> Result<Json<Vec<FilmView>>, ApiError> {
    films(&app, &p).await.map(Json)
}

#[derive(Serialize, ToSchema)]
pub struct FilmDetails {
    pub id: i64,
    pub title: String,
    pub year: Option<i64>,
    pub tmdb_id: Option<i64>,
    pub size: i64,
    pub container: Option<String>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub duration: Option<f64>,
    pub resolution: Option<String>,
    pub source: Option<String>,
    pub release_group: Option<String>,
    /// Where the user stopped watching, in seconds.
    pub position_secs: Option<f64>,
    pub poster: Option<String>,
}

pub async fn film_details(
    app: &AppState,
    user: &CurrentUser,
    id: i64,
) -> Result<FilmDetails, ApiError> {
    let f = app
        .db
        .file(id)
        .await?
        .filter(|f| f.present && f.probe_error.is_none())
        .ok_or_else(|| ApiError::not_found(format!("no film with id {id} in the library")))?;
    let entry = app.db.list().await?.into_iter().find(|e| e.id == id);
    let progress = app.db.progress(user.id, id).await?;
    let tmdb_id = entry.as_ref().and_then(|e| e.tmdb_id);
    let poster = match tmdb_id {
        Some(t)
            if tokio::fs::try_exists(
                app.library.config().posters_dir().join(format!("{t}.jpg")),
            )
            .await
            .unwrap_or(false) =>
        {
            Some(format!("/posters/{t}.jpg"))
        }
        _ => None,
    };
    Ok(FilmDetails {
        id,
        title: entry.as_ref().map_or(f.title.clone(), |e| e.title.clone()),
        year: entry.as_ref().map_or(f.year, |e| e.year),
        tmdb_id,
        size: f.size,
        container: f.container,
        video_codec: f.video_codec,
        audio_codec: f.audio_codec,
        width: f.width,
        height: f.height,
        duration: f.duration,
        resolution: f.resolution,
        source: f.source,
        release_group: f.release_group,
        position_secs: progress.filter(|p| !p.finished).map(|p| p.position_s),
        poster,
    })
}

fn parse_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::not_found(format!("no film with id {s}")))
}

/// One film.
#[utoipa::path(get, path = "/api/v1/library/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = FilmDetails), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn get_film(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<Json<FilmDetails>, ApiError> {
    film_details(&app, &u, parse_id(&id)?).await.map(Json)
}

#[derive(Deserialize, IntoParams)]
pub struct PlaybackParams {
    /// A built-in device profile (chrome, firefox, safari, apple-tv,
    /// android-tv, vlc, infuse); default: from the User-Agent.
    pub profile: Option<String>,
}

/// How the film plays on this device: direct play, or an HLS session.
#[utoipa::path(get, path = "/api/v1/library/{id}/playback", params(("id" = String, Path), PlaybackParams), responses(
    (status = 200, body = PlaybackPlan), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
    (status = 503, body = ErrorBody, description = "too many transcoding sessions")))]
pub async fn playback(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<PlaybackParams>,
    headers: HeaderMap,
) -> Result<Json<PlaybackPlan>, ApiError> {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    media::plan(&app, parse_id(&id)?, ua, p.profile.as_deref())
        .await
        .map(Json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// Seconds into the film.
    #[schema(minimum = 0, maximum = 10000000)]
    pub position_secs: f64,
    #[serde(default)]
    pub finished: bool,
}

/// Records where the caller is in a film.
#[utoipa::path(put, path = "/api/v1/library/{id}/progress", params(("id" = String, Path)), request_body = ProgressBody, responses(
    (status = 204, description = "saved"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn set_progress(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
    Json(body): Json<ProgressBody>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if !body.position_secs.is_finite() || body.position_secs < 0.0 || body.position_secs > 1e7 {
        return Err(ApiError::bad_request(
            "position_secs must be between 0 and 10,000,000",
        ));
    }
    if app.db.file(id).await?.is_none() {
        return Err(ApiError::not_found(format!("no film with id {id}")));
    }
    app.db
        .set_progress(u.id, id, body.position_secs, body.finished)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct NewToken {
    pub id: i64,
    pub name: String,
    /// Shown once: keep it (e.g. `[client] token` in riptide.toml).
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// What it is for (e.g. "laptop CLI").
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "laptop"
    )]
    pub name: String,
}

/// The caller's API tokens.
#[utoipa::path(get, path = "/api/v1/tokens", responses(
    (status = 200, body = [TokenView]), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_tokens(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    Ok(Json(
        app.db
            .api_tokens(u.id)
            .await?
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
            })
            .collect(),
    ))
}

pub async fn new_token(
    app: &AppState,
    user: &CurrentUser,
    name: &str,
) -> Result<NewToken, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name the token (1–64 characters, no control characters)",
        ));
    }
    let token = format!("rt_{}", auth::random_hex(32));
    let id = app
        .db
        .create_api_token(user.id, name, &auth::sha256_hex(&token))
        .await?;
    Ok(NewToken {
        id,
        name: name.to_string(),
        token,
    })
}

/// Creates an API token for the caller.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenBody, responses(
    (status = 201, body = NewToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
    (status = 429, body = ErrorBody)))]
pub async fn create_token(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Json(body): Json<CreateTokenBody>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(new_token(&app, &u, &body.name).await?),
    ))
}

/// Revokes one of the caller's API tokens (not the one the request uses).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path)), responses(
    (status = 204, description = "revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn delete_token(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::not_found("no such token"))?;
    if u.token_id == Some(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this request is authenticated with that token; revoke it with another token or on the Settings page",
        ));
    }
    if app.db.delete_api_token(u.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such token"))
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    pub created_at: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
        example = "kim"
    )]
    pub name: String,
    /// At least 8 characters.
    #[schema(min_length = 8, max_length = 1024, example = "a long passphrase")]
    pub password: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// Every account (admins only).
#[utoipa::path(get, path = "/api/v1/users", responses(
    (status = 200, body = [UserView]), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_users(State(app): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(
        app.db
            .users()
            .await?
            .into_iter()
            .map(|u| UserView {
                id: u.id,
                name: u.name,
                is_admin: u.is_admin,
                created_at: u.created_at,
            })
            .collect(),
    ))
}

pub async fn new_user(
    app: &AppState,
    name: &str,
    password: String,
    is_admin: bool,
) -> Result<UserView, ApiError> {
    let name = name.trim();
    auth::validate_new_account(name, &password, None).map_err(ApiError::bad_request)?;
    if app.db.user_by_name(name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("the user name “{name}” is taken; choose another"),
        ));
    }
    let hash = auth::hash_password(app, password).await?;
    let id = app
        .db
        .create_user(name, &hash, is_admin)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("the user name “{name}” is taken; choose another"),
            )
        })?;
    Ok(UserView {
        id,
        name: name.to_string(),
        is_admin,
        created_at: super::unix_now(),
    })
}

/// Creates an account (admins only).
#[utoipa::path(post, path = "/api/v1/users", request_body = CreateUserBody, responses(
    (status = 201, body = UserView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_user(
    State(app): State<AppState>,
    Json(body): Json<CreateUserBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(new_user(&app, &body.name, body.password, body.is_admin).await?),
    ))
}

pub async fn remove_user(app: &AppState, me: &CurrentUser, id: i64) -> Result<(), ApiError> {
    if id == me.id {
        return Err(ApiError::bad_request(
            "you cannot delete your own account; ask another admin",
        ));
    }
    if app.db.delete_user(id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("no such user"))
    }
}

/// Deletes an account, its sessions and tokens (admins only).
#[utoipa::path(delete, path = "/api/v1/users/{id}", params(("id" = String, Path)), responses(
    (status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn delete_user(
    State(app): State<AppState>,
    Extension(u): Extension<CurrentUser>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::not_found("no such user"))?;
    remove_user(&app, &u, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
