//! Media: a torrent's file while it downloads (`/stream/{info_hash}/{file}`,
//! served by the engine's `FileStream`, which waits for pieces and steers
//! the picker), a library file from disk (`/media/{id}`), posters, and the
//! playback plan that tells the player page whether to play directly or
//! through HLS.
//!
//! Players that cannot send cookies (VLC, TVs, ffmpeg) get URLs with a
//! signed, expiring `?token=` for that one path; a browser with a session
//! cookie may use either.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use streaming::decision::{DecisionKind, Options};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::{ApiError, Path};
use super::{AppState, unix_now};

/// How long a signed stream URL stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
const SNIFF_BYTES: usize = 64 * 1024;
const TAIL_GUESS: u64 = 512 << 10;

pub fn signed(app: &AppState, path: &str) -> String {
    let exp = unix_now() as u64 + TOKEN_TTL.as_secs();
    format!("{path}?token={}", app.signer.sign(path, exp))
}

/// How the film plays on the asking device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlaybackPlan {
    pub file_id: i64,
    /// `direct_play`, `remux`, `transcode_audio` or `transcode`.
    pub decision: String,
    /// Why it is not played directly (empty for direct play).
    pub reasons: Vec<String>,
    /// The device profile used (from the User-Agent or `?profile=`).
    pub profile: String,
    /// For `<video src>` on direct play.
    pub direct_url: Option<String>,
    /// HLS master playlist otherwise (play with hls.js or natively).
    pub hls_url: Option<String>,
    /// A URL that works without cookies for 24 h (VLC, TVs).
    pub external_url: String,
    pub duration_secs: Option<f64>,
}

pub async fn plan(
    app: &AppState,
    id: i64,
    user_agent: Option<&str>,
    profile: Option<&str>,
) -> Result<PlaybackPlan, ApiError> {
    let file = app
        .db
        .file(id)
        .await?
        .filter(|f| f.present)
        .ok_or_else(|| ApiError::not_found(format!("no film with id {id} in the library")))?;
    let profile = streaming::profiles::resolve(profile, user_agent, None)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let path = PathBuf::from(&file.path);
    let info = ffmpeg::probe(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot read the film: {e}; rescan the library or download it again"),
        )
    })?;
    let decision = streaming::decision::decide(&info, &path, &profile, &Options::default())
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let media_path = format!("/media/{id}");
    let mut plan = PlaybackPlan {
        file_id: id,
        decision: decision.decision.as_str().into(),
        reasons: decision.reasons.clone(),
        profile: profile.name.to_string(),
        direct_url: None,
        hls_url: None,
        external_url: signed(app, &media_path),
        duration_secs: info.duration_secs,
    };
    if decision.decision == DecisionKind::DirectPlay {
        plan.direct_url = Some(media_path);
    } else {
        let s = app
            .hls
            .start(ffmpeg::Input::File(path.clone()), &path, &info, &profile)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        plan.hls_url = Some(s.master);
    }
    Ok(plan)
}

pub async fn library_file(
    State(app): State<AppState>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return ApiError::not_found("no such film").into_response();
    };
    let file = match app.db.file(id).await {
        Ok(Some(f)) if f.present => f,
        Ok(_) => return ApiError::not_found(format!("no film with id {id}")).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let path = PathBuf::from(&file.path);
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) => {
            return ApiError::not_found(format!(
                "the film's file is gone ({e}); rescan the library"
            ))
            .into_response();
        }
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"f{id}-{}-{mtime}\"", meta.len());
    let resource = streaming::range::Resource {
        len: meta.len(),
        content_type: streaming::mime::content_type(&path),
        etag: &etag,
    };
    streaming::range::respond(&method, &headers, resource, |range| async move {
        let mut f = tokio::fs::File::open(&path).await?;
        f.seek(std::io::SeekFrom::Start(range.start)).await?;
        Ok::<_, std::io::Error>(f)
    })
    .await
}

pub async fn torrent_file(
    State(app): State<AppState>,
    Path((info_hash, file)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(handle) = app.downloads.torrent(&info_hash) else {
        return ApiError::not_found("no such torrent").into_response();
    };
    let Ok(file) = file.parse::<usize>() else {
        return ApiError::not_found("no such file").into_response();
    };
    let files = match tokio::time::timeout(Duration::from_secs(30), handle.files()).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the torrent's metadata has not arrived yet; try again when peers are connected",
            )
            .into_response();
        }
    };
    let Some(info) = files.get(file).filter(|f| !f.padding) else {
        return ApiError::not_found("no such file").into_response();
    };
    tokio::spawn(prepare(app.clone(), handle.clone(), file));
    let ih = handle.info_hash().to_hex();
    let etag = format!("\"{ih}-{file}-{}\"", info.length);
    let resource = streaming::range::Resource {
        len: info.length,
        content_type: streaming::mime::content_type(&info.path),
        etag: &etag,
    };
    streaming::range::respond(&method, &headers, resource, |range| async move {
        handle.open_file_range(file, range).await
    })
    .await
}

/// Reads the head of a file (making it the most urgent piece), finds the
/// container's index and duration, and has both fetched first — once per
/// file (the same steps as `riptide stream`).
async fn prepare(app: AppState, handle: bt_engine::TorrentHandle, file: usize) {
    let key = (handle.info_hash(), file);
    if !app.sniffed.lock().insert(key) {
        return;
    }
    let Ok(mut stream) = handle.open_file_range(file, 0..SNIFF_BYTES as u64).await else {
        return;
    };
    let len = stream.len();
    let path = handle
        .files()
        .await
        .ok()
        .and_then(|f| f.get(file).map(|f| f.path.clone()));
    let ext = path
        .as_deref()
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if matches!(ext.as_str(), "mp4" | "m4v" | "mov" | "mkv" | "webm") {
        handle.prefetch(
            file,
            std::slice::from_ref(&(len.saturating_sub(TAIL_GUESS.min(len / 8))..len)),
            Duration::from_secs(30),
        );
    }
    let mut head = vec![0u8; SNIFF_BYTES.min(len as usize)];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    drop(stream);
    let sniffed = streaming::container::sniff(&head[..got], len);
    if !sniffed.index.is_empty() {
        handle.prefetch(file, &sniffed.index, Duration::from_secs(60));
    }
    if let Some(d) = sniffed.duration_secs.filter(|d| *d > 1.0) {
        handle.set_file_bitrate(file, (len as f64 / d) as u64);
    }
}

pub async fn poster(State(app): State<AppState>, Path(file): Path<String>) -> Response {
    let ok = file
        .strip_suffix(".jpg")
        .is_some_and(|n| !n.is_empty() && n.len() < 12 && n.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return ApiError::not_found("no such poster").into_response();
    }
    match tokio::fs::read(app.library.config().posters_dir().join(&file)).await {
        Ok(b) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=86400"),
            ],
            b,
        )
            .into_response(),
        Err(_) => ApiError::not_found("no such poster").into_response(),
    }
}

/// `(info_hash, file)` pairs sniffed already.
pub type Sniffed = parking_lot::Mutex<std::collections::HashSet<(bt_proto::InfoHash, usize)>>;
