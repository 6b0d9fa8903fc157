//! Every route of the server in one table: path, methods, who may call
//! it, and the handler. The router is built from this table and the auth
//! layer looks routes up in it, so a route cannot exist without an access
//! rule; a path that is not in the table needs a logged-in user (deny by
//! default). The test at the bottom walks the table.
//!
//! Who may do what:
//!
//! | role | may |
//! |---|---|
//! | anyone | log in; the first-start setup page (from this machine, before any account exists); static files |
//! | user | browse and search the library, play films (stream, HLS), see downloads and status, add torrents, pause and resume them, manage their own API tokens and password |
//! | admin | everything a user may, plus remove torrents (with or without data) and manage accounts |

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};

use super::{AppState, api, auth, media, pages};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No login needed.
    Public,
    /// Any logged-in user (or an API token).
    User,
    /// Admins only.
    Admin,
    /// A logged-in user, or a signed `?token=` for exactly this URL
    /// (players that cannot send cookies).
    UserOrSigned,
}

pub struct RouteSpec {
    pub path: &'static str,
    pub method: Method,
    pub access: Access,
}

type Build = fn() -> MethodRouter<AppState>;
/// A path, who may call it with which method, and its handlers.
type Entry = (&'static str, Vec<(Method, Access)>, Build);

fn table() -> Vec<Entry> {
    use Access::*;
    vec![
        // Public.
        (
            "/login",
            vec![(Method::GET, Public), (Method::POST, Public)],
            || get(auth::login_page).post(auth::login),
        ),
        (
            "/setup",
            vec![(Method::GET, Public), (Method::POST, Public)],
            || get(auth::setup_page).post(auth::setup),
        ),
        ("/static/{file}", vec![(Method::GET, Public)], || {
            get(pages::static_file)
        }),
        ("/static/vendor/{file}", vec![(Method::GET, Public)], || {
            get(pages::vendor_file)
        }),
        // Pages.
        ("/", vec![(Method::GET, User)], || get(pages::library)),
        ("/film/{id}", vec![(Method::GET, User)], || get(pages::film)),
        ("/play/{id}", vec![(Method::GET, User)], || {
            get(pages::player)
        }),
        ("/downloads", vec![(Method::GET, User)], || {
            get(pages::downloads)
        }),
        ("/downloads/add", vec![(Method::POST, User)], || {
            post(pages::add_torrent)
        }),
        (
            "/downloads/{info_hash}/pause",
            vec![(Method::POST, User)],
            || post(pages::pause),
        ),
        (
            "/downloads/{info_hash}/resume",
            vec![(Method::POST, User)],
            || post(pages::resume),
        ),
        (
            "/downloads/{info_hash}/remove",
            vec![(Method::POST, Admin)],
            || post(pages::remove),
        ),
        ("/settings", vec![(Method::GET, User)], || {
            get(pages::settings)
        }),
        ("/settings/password", vec![(Method::POST, User)], || {
            post(pages::change_password)
        }),
        ("/settings/tokens", vec![(Method::POST, User)], || {
            post(pages::create_token)
        }),
        (
            "/settings/tokens/{id}/delete",
            vec![(Method::POST, User)],
            || post(pages::delete_token),
        ),
        ("/settings/users", vec![(Method::POST, Admin)], || {
            post(pages::create_user)
        }),
        (
            "/settings/users/{id}/delete",
            vec![(Method::POST, Admin)],
            || post(pages::delete_user),
        ),
        ("/status", vec![(Method::GET, User)], || get(pages::status)),
        ("/logout", vec![(Method::POST, User)], || post(auth::logout)),
        // Media.
        ("/posters/{file}", vec![(Method::GET, User)], || {
            get(media::poster)
        }),
        (
            "/media/{id}",
            vec![(Method::GET, UserOrSigned), (Method::HEAD, UserOrSigned)],
            || get(media::library_file),
        ),
        (
            "/stream/{info_hash}/{file}",
            vec![(Method::GET, UserOrSigned), (Method::HEAD, UserOrSigned)],
            || get(media::torrent_file),
        ),
        // REST API.
        ("/api/openapi.json", vec![(Method::GET, User)], || {
            get(api::openapi_json)
        }),
        ("/api/v1/me", vec![(Method::GET, User)], || get(api::me)),
        ("/api/v1/status", vec![(Method::GET, User)], || {
            get(api::status)
        }),
        ("/api/v1/events", vec![(Method::GET, User)], || {
            get(api::events)
        }),
        (
            "/api/v1/torrents",
            vec![(Method::GET, User), (Method::POST, User)],
            || get(api::list_torrents).post(api::add_torrent),
        ),
        (
            "/api/v1/torrents/{info_hash}",
            vec![(Method::GET, User), (Method::DELETE, Admin)],
            || get(api::get_torrent).delete(api::remove_torrent),
        ),
        (
            "/api/v1/torrents/{info_hash}/pause",
            vec![(Method::POST, User)],
            || post(api::pause_torrent),
        ),
        (
            "/api/v1/torrents/{info_hash}/resume",
            vec![(Method::POST, User)],
            || post(api::resume_torrent),
        ),
        (
            "/api/v1/torrents/{info_hash}/peers",
            vec![(Method::GET, User)],
            || get(api::torrent_peers),
        ),
        ("/api/v1/library", vec![(Method::GET, User)], || {
            get(api::list_library)
        }),
        ("/api/v1/library/{id}", vec![(Method::GET, User)], || {
            get(api::get_film)
        }),
        (
            "/api/v1/library/{id}/playback",
            vec![(Method::GET, User)],
            || get(api::playback),
        ),
        (
            "/api/v1/library/{id}/progress",
            vec![(Method::PUT, User)],
            || put(api::set_progress),
        ),
        (
            "/api/v1/tokens",
            vec![(Method::GET, User), (Method::POST, User)],
            || get(api::list_tokens).post(api::create_token),
        ),
        ("/api/v1/tokens/{id}", vec![(Method::DELETE, User)], || {
            delete(api::delete_token)
        }),
        (
            "/api/v1/users",
            vec![(Method::GET, Admin), (Method::POST, Admin)],
            || get(api::list_users).post(api::create_user),
        ),
        ("/api/v1/users/{id}", vec![(Method::DELETE, Admin)], || {
            delete(api::delete_user)
        }),
    ]
}

/// Routes mounted from the `streaming` crate (their own routers): listed
/// here so that the auth layer and the route-walking test know them.
fn mounted() -> Vec<(&'static str, Vec<(Method, Access)>)> {
    vec![
        ("/hls/{session}/{name}", vec![(Method::GET, Access::User)]),
        ("/hls/{session}", vec![(Method::DELETE, Access::User)]),
        ("/pretranscode/status", vec![(Method::GET, Access::User)]),
    ]
}

/// Every (path, method, access) the server answers.
pub fn specs() -> Vec<RouteSpec> {
    let mut out = Vec::new();
    for (path, methods) in table().into_iter().map(|(p, m, _)| (p, m)).chain(mounted()) {
        for (method, access) in methods {
            out.push(RouteSpec {
                path,
                method,
                access,
            });
        }
    }
    out
}

/// The routes of [`table`] (the streaming crate's are merged by the caller).
pub fn router() -> Router<AppState> {
    let mut r = Router::new();
    for (path, _, build) in table() {
        r = r.route(path, build());
    }
    r
}

/// Whether `path` matches the route template `pattern` (`{x}` = one
/// segment).
fn matches(pattern: &str, path: &str) -> bool {
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.starts_with('{') && a.ends_with('}') => {
                if b.is_empty() {
                    return false;
                }
            }
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The access rule for a request; `User` when nothing matches (deny by
/// default: unknown paths are 404 only for logged-in users).
pub fn access(method: &Method, path: &str) -> Access {
    // HEAD is answered by GET routes.
    let method = if method == Method::HEAD
        && !path.starts_with("/media/")
        && !path.starts_with("/stream/")
    {
        &Method::GET
    } else {
        method
    };
    let specs = specs();
    // Literal routes before templated ones (`/downloads/add` vs `/downloads/{x}`).
    let mut best: Option<(usize, Access)> = None;
    for s in &specs {
        if s.method == *method && matches(s.path, path) {
            let literal = s.path.matches('{').count();
            if best.is_none_or(|(b, _)| literal < b) {
                best = Some((literal, s.access));
            }
        }
    }
    if let Some((_, a)) = best {
        return a;
    }
    // Same path, other method: the strictest rule of that path.
    let rules: Vec<Access> = specs
        .iter()
        .filter(|s| matches(s.path, path))
        .map(|s| s.access)
        .collect();
    if rules.contains(&Access::Admin) {
        Access::Admin
    } else {
        Access::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_one_segment() {
        assert!(matches("/film/{id}", "/film/3"));
        assert!(!matches("/film/{id}", "/film/3/x"));
        assert!(!matches("/film/{id}", "/film/"));
        assert_eq!(access(&Method::POST, "/downloads/add"), Access::User);
        assert_eq!(access(&Method::POST, "/downloads/ab/remove"), Access::Admin);
        assert_eq!(access(&Method::GET, "/nope"), Access::User);
        assert_eq!(access(&Method::GET, "/static/style.css"), Access::Public);
        assert_eq!(access(&Method::GET, "/static/../etc/passwd"), Access::User);
    }
}
