//! A TMDB v3 stand-in on 127.0.0.1 that answers with the response shapes
//! TMDB documents (search/movie, movie/{id}, configuration, images).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

pub const KEY: &str = "0123456789abcdef0123456789abcdef";

/// (id, title, original title, release date, rating)
pub const MOVIES: &[(i64, &str, &str, &str, f64)] = &[
    (10378, "Big Buck Bunny", "Big Buck Bunny", "2008-05-30", 6.4),
    (
        194,
        "Amélie",
        "Le Fabuleux Destin d'Amélie Poulain",
        "2001-04-25",
        7.9,
    ),
    (603, "The Matrix", "The Matrix", "1999-03-30", 8.2),
    (1091, "The Thing", "The Thing", "1982-06-25", 8.0),
    (60935, "The Thing", "The Thing", "2011-10-12", 6.3),
    (
        62,
        "2001: A Space Odyssey",
        "2001: A Space Odyssey",
        "1968-04-02",
        8.1,
    ),
    (101, "Léon: The Professional", "Léon", "1994-09-14", 8.3),
    (807, "Se7en", "Se7en", "1995-09-22", 8.4),
];

#[derive(Default)]
pub struct Counters {
    pub search: AtomicU32,
    pub details: AtomicU32,
    pub configuration: AtomicU32,
    pub images: AtomicU32,
    /// Answer this many requests with 429 first.
    pub throttle: AtomicU32,
    pub throttled: AtomicU32,
    pub bad_key: AtomicU32,
}

pub struct Mock {
    pub base_url: String,
    pub counters: Arc<Counters>,
    _server: tokio::task::JoinHandle<()>,
}

fn fold(s: &str) -> String {
    media_library::search::fold(s)
}

fn authorized(q: &std::collections::HashMap<String, String>, h: &HeaderMap) -> bool {
    q.get("api_key").map(String::as_str) == Some(KEY)
        || h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer eyJtest")
}

type Shared = (Arc<Counters>, String);

fn gate(
    c: &Counters,
    q: &std::collections::HashMap<String, String>,
    h: &HeaderMap,
) -> Option<Response> {
    if !authorized(q, h) {
        c.bad_key.fetch_add(1, Ordering::Relaxed);
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"status_code": 7, "status_message": "Invalid API key: You must be granted a valid key.", "success": false})),
            )
                .into_response(),
        );
    }
    if c.throttle
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        c.throttled.fetch_add(1, Ordering::Relaxed);
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"status_code": 25, "status_message": "Your request count (41) is over the allowed limit of 40."})),
            )
                .into_response(),
        );
    }
    None
}

async fn search(
    State((c, _)): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Some(r) = gate(&c, &q, &h) {
        return r;
    }
    c.search.fetch_add(1, Ordering::Relaxed);
    let query = fold(q.get("query").map_or("", String::as_str));
    let year = q.get("year").cloned();
    let results: Vec<_> = MOVIES
        .iter()
        .filter(|m| {
            (fold(m.1).contains(&query) || fold(m.2).contains(&query))
                && year.as_ref().is_none_or(|y| m.3.starts_with(y.as_str()))
        })
        .map(|m| {
            json!({
                "adult": false, "backdrop_path": null, "genre_ids": [18],
                "id": m.0, "original_language": "en", "original_title": m.2,
                "overview": "…", "popularity": 12.5, "poster_path": format!("/p{}.jpg", m.0),
                "release_date": m.3, "title": m.1, "video": false,
                "vote_average": m.4, "vote_count": 1000
            })
        })
        .collect();
    let n = results.len();
    axum::Json(json!({"page": 1, "results": results, "total_pages": 1, "total_results": n}))
        .into_response()
}

async fn details(
    State((c, _)): State<Shared>,
    Path(id): Path<i64>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Some(r) = gate(&c, &q, &h) {
        return r;
    }
    c.details.fetch_add(1, Ordering::Relaxed);
    let Some(m) = MOVIES.iter().find(|m| m.0 == id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"status_code": 34, "status_message": "The resource you requested could not be found."})),
        )
            .into_response();
    };
    axum::Json(json!({
        "adult": false, "backdrop_path": null, "belongs_to_collection": null, "budget": 0,
        "genres": [{"id": 18, "name": "Drama"}], "homepage": "", "id": m.0,
        "imdb_id": format!("tt{:07}", m.0), "original_language": "en", "original_title": m.2,
        "overview": "…", "popularity": 12.5, "poster_path": format!("/p{}.jpg", m.0),
        "production_companies": [], "release_date": m.3, "revenue": 0, "runtime": 100,
        "status": "Released", "tagline": "", "title": m.1, "video": false,
        "vote_average": m.4, "vote_count": 1000
    }))
    .into_response()
}

async fn configuration(
    State((c, base)): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if let Some(r) = gate(&c, &q, &h) {
        return r;
    }
    c.configuration.fetch_add(1, Ordering::Relaxed);
    axum::Json(json!({
        "images": {
            "base_url": format!("{base}/t/p/"),
            "secure_base_url": format!("{base}/t/p/"),
            "backdrop_sizes": ["w300", "w780", "w1280", "original"],
            "logo_sizes": ["w45", "w92", "original"],
            "poster_sizes": ["w92", "w154", "w185", "w342", "w500", "w780", "original"],
            "profile_sizes": ["w45", "w185", "h632", "original"],
            "still_sizes": ["w92", "w185", "w300", "original"]
        },
        "change_keys": ["adult", "title"]
    }))
    .into_response()
}

async fn image(
    State((c, _)): State<Shared>,
    Path((size, file)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    c.images.fetch_add(1, Ordering::Relaxed);
    assert!(
        !q.contains_key("api_key"),
        "the key leaked to the image server"
    );
    (
        [("content-type", "image/jpeg")],
        format!("JPEG {size} {file}"),
    )
        .into_response()
}

pub async fn start() -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        .route("/3/search/movie", get(search))
        .route("/3/movie/{id}", get(details))
        .route("/3/configuration", get(configuration))
        .route("/t/p/{size}/{file}", get(image))
        .with_state((counters.clone(), base.clone()));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Mock {
        base_url: format!("{base}/3"),
        counters,
        _server: server,
    }
}
