//! The TMDB client against a loopback mock with TMDB's documented shapes
//! (never the real TMDB).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use media_library::tmdb::{Tmdb, TmdbConfig, TmdbError};
use support::tmdb_mock;

fn config(base: &str, key: &str) -> TmdbConfig {
    TmdbConfig {
        api_key: Some(key.into()),
        base_url: base.into(),
        max_retry_after: Duration::from_secs(2),
        max_retries: 2,
        ..TmdbConfig::default()
    }
}

#[tokio::test]
async fn search_details_configuration_and_posters() {
    let mock = tmdb_mock::start().await;
    let t = Tmdb::new(&config(&mock.base_url, tmdb_mock::KEY))
        .unwrap()
        .unwrap();
    let r = t.search_movie("The Thing", Some(1982)).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].id, r[0].year()), (1091, Some(1982)));
    assert_eq!(t.search_movie("The Thing", None).await.unwrap().len(), 2);
    let d = t.movie(62).await.unwrap();
    assert_eq!(
        (d.title.as_str(), d.year(), d.runtime),
        ("2001: A Space Odyssey", Some(1968), Some(100))
    );
    assert!(matches!(
        t.movie(999_999).await,
        Err(TmdbError::NotFound { .. })
    ));
    let images = t.configuration().await.unwrap();
    assert_eq!(images.poster_size(), "w500");
    let dir = tempfile::tempdir().unwrap();
    let p = t.poster(&images, "/p62.jpg", 62, dir.path()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "JPEG w500 p62.jpg");
    t.poster(&images, "/p62.jpg", 62, dir.path()).await.unwrap();
    assert_eq!(mock.counters.images.load(Ordering::Relaxed), 1, "cached");
}

#[tokio::test]
async fn a_v4_token_goes_in_the_authorization_header() {
    let mock = tmdb_mock::start().await;
    let t = Tmdb::new(&config(&mock.base_url, "eyJtest"))
        .unwrap()
        .unwrap();
    assert_eq!(t.movie(603).await.unwrap().title, "The Matrix");
}

#[tokio::test]
async fn retry_after_is_honoured_then_gives_up() {
    let mock = tmdb_mock::start().await;
    let t = Tmdb::new(&config(&mock.base_url, tmdb_mock::KEY))
        .unwrap()
        .unwrap();
    mock.counters.throttle.store(2, Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    assert_eq!(t.movie(603).await.unwrap().id, 603);
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "waited Retry-After: 1 twice"
    );
    mock.counters.throttle.store(10, Ordering::Relaxed);
    let e = t.movie(603).await.unwrap_err();
    assert!(matches!(e, TmdbError::RateLimited { tries: 3 }), "{e}");
}

#[tokio::test]
async fn bad_keys_and_unreachable_servers_are_clear_errors() {
    let mock = tmdb_mock::start().await;
    let t = Tmdb::new(&config(&mock.base_url, "nope")).unwrap().unwrap();
    let e = t.movie(603).await.unwrap_err();
    assert!(
        matches!(e, TmdbError::Unauthorized) && e.to_string().contains("API key"),
        "{e}"
    );
    // A closed loopback port.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let t = Tmdb::new(&config(
        &format!("http://127.0.0.1:{port}/3"),
        tmdb_mock::KEY,
    ))
    .unwrap()
    .unwrap();
    let e = t.movie(1).await.unwrap_err();
    assert!(e.to_string().contains("cannot reach TMDB"), "{e}");
    assert!(!e.to_string().contains(tmdb_mock::KEY), "key leaked: {e}");
    // No key: no client, and the library works from parsed names.
    assert!(Tmdb::new(&TmdbConfig::default()).unwrap().is_none());
    assert!(matches!(
        Tmdb::new(&config("not a url", "k")),
        Err(TmdbError::BadBaseUrl(_))
    ));
}
