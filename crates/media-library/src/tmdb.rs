//! TMDB v3 client: movie search by title and year, movie details, the
//! image configuration, and posters cached on disk.
//!
//! Works with a v3 API key (sent as `api_key=`) or a v4 read access token
//! (a JWT, sent as `Authorization: Bearer`). The base URL is configurable
//! so tests (and proxies) can stand in for `api.themoviedb.org`. HTTP 429
//! is honoured: wait `Retry-After` seconds (capped), retry a bounded number
//! of times. Without a key there is no client at all and films stay
//! unmatched (parsed title and year only) until one is configured.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub const DEFAULT_BASE_URL: &str = "https://api.themoviedb.org/3";

#[derive(Debug, Clone)]
pub struct TmdbConfig {
    /// v3 API key or v4 read access token; `None` disables matching.
    pub api_key: Option<String>,
    pub base_url: String,
    /// TMDB `language` parameter, e.g. "en-US"; `None` = TMDB's default.
    pub language: Option<String>,
    /// Longest wait for one `Retry-After`.
    pub max_retry_after: Duration,
    /// 429 answers tolerated per request before giving up.
    pub max_retries: u32,
}

impl Default for TmdbConfig {
    fn default() -> Self {
        TmdbConfig {
            api_key: None,
            base_url: DEFAULT_BASE_URL.to_string(),
            language: None,
            max_retry_after: Duration::from_secs(30),
            max_retries: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TmdbError {
    #[error("TMDB base URL \"{0}\" is not a valid URL; fix tmdb base URL in the config")]
    BadBaseUrl(String),
    #[error("cannot reach TMDB at {url}: {source}; check the network or the tmdb base URL")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("TMDB rejected the API key (HTTP 401); check the tmdb API key in the config")]
    Unauthorized,
    #[error("TMDB has no {what}")]
    NotFound { what: String },
    #[error("TMDB kept answering 429 Too Many Requests ({tries} tries); try again later")]
    RateLimited { tries: u32 },
    #[error("TMDB answered HTTP {status} for {url}")]
    Status { status: u16, url: String },
    #[error("TMDB's answer from {url} is not what its documentation describes: {reason}")]
    Decode { url: String, reason: String },
    #[error("cannot save poster {path}: {source}")]
    Poster {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `GET /search/movie` result (the fields we use).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MovieResult {
    pub id: i64,
    pub title: String,
    #[serde(default)]
    pub original_title: Option<String>,
    /// "YYYY-MM-DD", or "" when unknown.
    #[serde(default)]
    pub release_date: Option<String>,
    #[serde(default)]
    pub vote_average: Option<f64>,
    #[serde(default)]
    pub poster_path: Option<String>,
}

impl MovieResult {
    pub fn year(&self) -> Option<i64> {
        year_of(self.release_date.as_deref())
    }
}

fn year_of(date: Option<&str>) -> Option<i64> {
    date.and_then(|d| d.get(..4)).and_then(|y| y.parse().ok())
}

#[derive(Deserialize)]
struct SearchPage {
    results: Vec<MovieResult>,
}

/// `GET /movie/{id}` (the fields we use).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MovieDetails {
    pub id: i64,
    pub title: String,
    #[serde(default)]
    pub original_title: Option<String>,
    #[serde(default)]
    pub release_date: Option<String>,
    #[serde(default)]
    pub vote_average: Option<f64>,
    #[serde(default)]
    pub poster_path: Option<String>,
    #[serde(default)]
    pub runtime: Option<i64>,
    #[serde(default)]
    pub imdb_id: Option<String>,
}

impl MovieDetails {
    pub fn year(&self) -> Option<i64> {
        year_of(self.release_date.as_deref())
    }
}

/// `GET /configuration` → `images`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageConfig {
    pub base_url: String,
    #[serde(default)]
    pub secure_base_url: Option<String>,
    #[serde(default)]
    pub poster_sizes: Vec<String>,
}

impl ImageConfig {
    /// "w500" if offered (sharp on a TV, ~50 KiB), else the largest
    /// numbered size, else "original".
    pub fn poster_size(&self) -> &str {
        if self.poster_sizes.iter().any(|s| s == "w500") {
            return "w500";
        }
        self.poster_sizes
            .iter()
            .filter(|s| s.starts_with('w'))
            .max_by_key(|s| s[1..].parse::<u32>().unwrap_or(0))
            .map_or("original", String::as_str)
    }
}

#[derive(Deserialize)]
struct Configuration {
    images: ImageConfig,
}

#[derive(Debug, Clone)]
pub struct Tmdb {
    http: reqwest::Client,
    base: Url,
    key: String,
    config: TmdbConfig,
}

impl Tmdb {
    /// `None` without an API key: the library then works from parsed names.
    pub fn new(config: &TmdbConfig) -> Result<Option<Tmdb>, TmdbError> {
        let Some(key) = config.api_key.clone().filter(|k| !k.trim().is_empty()) else {
            return Ok(None);
        };
        let mut base = config.base_url.trim_end_matches('/').to_string();
        base.push('/');
        let base = Url::parse(&base).map_err(|_| TmdbError::BadBaseUrl(config.base_url.clone()))?;
        // reqwest is built without a default TLS provider (as in bt-engine);
        // installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("Riptide/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| TmdbError::Http {
                url: base.to_string(),
                source,
            })?;
        Ok(Some(Tmdb {
            http,
            base,
            key: key.trim().to_string(),
            config: config.clone(),
        }))
    }

    fn url(&self, path: &str, params: &[(&str, String)]) -> Url {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .expect("relative path joins");
        {
            let mut q = url.query_pairs_mut();
            if !self.key.starts_with("eyJ") {
                q.append_pair("api_key", &self.key);
            }
            if let Some(lang) = &self.config.language {
                q.append_pair("language", lang);
            }
            for (k, v) in params {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// GET with 429 handling; `auth` is false for the image server, which
    /// must never see the key.
    async fn get(&self, url: Url, auth: bool) -> Result<reqwest::Response, TmdbError> {
        let shown = redact_key(&url);
        let mut tries = 0;
        loop {
            let mut req = self.http.get(url.clone());
            if auth && self.key.starts_with("eyJ") {
                req = req.bearer_auth(&self.key);
            }
            let resp = req.send().await.map_err(|source| TmdbError::Http {
                url: shown.clone(),
                // reqwest's message repeats the URL, API key included.
                source: source.without_url(),
            })?;
            match resp.status() {
                s if s.is_success() => return Ok(resp),
                StatusCode::TOO_MANY_REQUESTS => {
                    tries += 1;
                    if tries > self.config.max_retries {
                        return Err(TmdbError::RateLimited { tries });
                    }
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs)
                        .min(self.config.max_retry_after);
                    tracing::debug!(?wait, "TMDB rate limit, waiting");
                    tokio::time::sleep(wait).await;
                }
                StatusCode::UNAUTHORIZED => return Err(TmdbError::Unauthorized),
                StatusCode::NOT_FOUND => {
                    return Err(TmdbError::NotFound {
                        what: url.path().to_string(),
                    });
                }
                s => {
                    return Err(TmdbError::Status {
                        status: s.as_u16(),
                        url: shown,
                    });
                }
            }
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, TmdbError> {
        let shown = redact_key(&url);
        let bytes = self
            .get(url, true)
            .await?
            .bytes()
            .await
            .map_err(|source| TmdbError::Http {
                url: shown.clone(),
                // reqwest's message repeats the URL, API key included.
                source: source.without_url(),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| TmdbError::Decode {
            url: shown,
            reason: e.to_string(),
        })
    }

    /// `GET /search/movie?query=…&year=…`: the first page, best first.
    pub async fn search_movie(
        &self,
        title: &str,
        year: Option<i64>,
    ) -> Result<Vec<MovieResult>, TmdbError> {
        let mut params = vec![
            ("query", title.to_string()),
            ("include_adult", "false".to_string()),
        ];
        if let Some(y) = year {
            params.push(("year", y.to_string()));
        }
        let page: SearchPage = self.get_json(self.url("search/movie", &params)).await?;
        Ok(page.results)
    }

    /// `GET /movie/{id}`.
    pub async fn movie(&self, id: i64) -> Result<MovieDetails, TmdbError> {
        self.get_json(self.url(&format!("movie/{id}"), &[])).await
    }

    /// `GET /configuration` → where images live.
    pub async fn configuration(&self) -> Result<ImageConfig, TmdbError> {
        let c: Configuration = self.get_json(self.url("configuration", &[])).await?;
        Ok(c.images)
    }

    /// The poster of `tmdb_id` in `dir` (`{tmdb_id}.jpg`), downloaded once:
    /// an existing file is returned without a request. Written to a temp
    /// file and renamed, so a crash never leaves half a picture.
    pub async fn poster(
        &self,
        images: &ImageConfig,
        poster_path: &str,
        tmdb_id: i64,
        dir: &Path,
    ) -> Result<PathBuf, TmdbError> {
        let path = dir.join(format!("{tmdb_id}.jpg"));
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let base = images
            .secure_base_url
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&images.base_url);
        let raw = format!(
            "{}/{}/{}",
            base.trim_end_matches('/'),
            images.poster_size(),
            poster_path.trim_start_matches('/')
        );
        let url = Url::parse(&raw).map_err(|e| TmdbError::Decode {
            url: raw.clone(),
            reason: e.to_string(),
        })?;
        let bytes = self
            .get(url, false)
            .await?
            .bytes()
            .await
            .map_err(|source| TmdbError::Http { url: raw, source })?;
        let io = |source| TmdbError::Poster {
            path: path.clone(),
            source,
        };
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = dir.join(format!(".{tmdb_id}.jpg.tmp"));
        tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(path)
    }
}

/// URLs in errors and logs without the API key.
fn redact_key(url: &Url) -> String {
    let mut u = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "api_key" {
                "***".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    if pairs.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// The best TMDB result for a parsed title and year, if any is convincing:
/// the (accent- and case-folded) title must equal the result's title or
/// original title, and the year must match within one (release dates
/// differ by country) when the name has one.
pub fn best_match<'a>(
    title: &str,
    year: Option<i64>,
    results: &'a [MovieResult],
) -> Option<&'a MovieResult> {
    let want = crate::search::fold(title);
    let mut best: Option<(u8, &MovieResult)> = None;
    for r in results {
        let title_ok = crate::search::fold(&r.title) == want
            || r.original_title.as_deref().map(crate::search::fold) == Some(want.clone());
        if !title_ok {
            continue;
        }
        let score = match (year, r.year()) {
            (Some(a), Some(b)) if a == b => 3,
            (Some(a), Some(b)) if (a - b).abs() == 1 => 2,
            (Some(_), _) => continue,
            (None, _) => 1,
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, r));
        }
    }
    best.map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: i64, title: &str, date: &str) -> MovieResult {
        MovieResult {
            id,
            title: title.into(),
            original_title: None,
            release_date: Some(date.into()),
            vote_average: None,
            poster_path: None,
        }
    }

    #[test]
    fn matching_needs_the_title_and_a_close_year() {
        let res = [
            r(1, "The Thing", "2011-10-12"),
            r(2, "The Thing", "1982-06-25"),
            r(3, "The Thing Called Love", "1993-08-27"),
        ];
        assert_eq!(best_match("The Thing", Some(1982), &res).unwrap().id, 2);
        assert_eq!(best_match("the thing", Some(2012), &res).unwrap().id, 1);
        assert!(best_match("The Thing", Some(1999), &res).is_none());
        assert!(best_match("Thing", Some(1982), &res).is_none());
        let mut amelie = r(4, "Amélie", "2001-04-25");
        amelie.original_title = Some("Le Fabuleux Destin d'Amélie Poulain".into());
        assert_eq!(best_match("Amelie", Some(2001), &[amelie]).unwrap().id, 4);
    }

    #[test]
    fn keys_never_reach_messages() {
        let u = Url::parse("http://h/3/search/movie?api_key=SECRET&query=x").unwrap();
        let s = redact_key(&u);
        assert!(!s.contains("SECRET") && s.contains("query=x"), "{s}");
    }

    #[test]
    fn poster_sizes() {
        let mut c = ImageConfig {
            base_url: "http://x/".into(),
            secure_base_url: None,
            poster_sizes: vec!["w92".into(), "w500".into(), "original".into()],
        };
        assert_eq!(c.poster_size(), "w500");
        c.poster_sizes = vec!["w92".into(), "w342".into(), "original".into()];
        assert_eq!(c.poster_size(), "w342");
        c.poster_sizes.clear();
        assert_eq!(c.poster_size(), "original");
    }
}
