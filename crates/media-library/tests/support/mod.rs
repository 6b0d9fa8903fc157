//! Shared by the integration tests: a database of each backend, the
//! sample media set, and a mock TMDB server on loopback.
#![allow(dead_code)]

pub mod tmdb_mock;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use media_library::{Library, LibraryConfig};

/// Runs one async test body against SQLite and against PostgreSQL (the
/// latter skips, with a printed reason, when RIPTIDE_TEST_POSTGRES_URL is
/// not set; scripts/test.sh sets it).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let fx = $crate::support::Fixture::sqlite().await;
                    super::$name(&fx).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(fx) = $crate::support::Fixture::postgres().await else { return };
                    super::$name(&fx).await;
                }
            )*
        }
    };
}

/// A fresh, empty database plus a data dir, for one test.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// `None` = SQLite in `dir`.
    pub database_url: Option<String>,
}

impl Fixture {
    pub async fn sqlite() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            database_url: None,
        }
    }

    /// A new database in the test cluster, or `None` (after printing why).
    pub async fn postgres() -> Option<Fixture> {
        let Ok(base) = std::env::var("RIPTIDE_TEST_POSTGRES_URL") else {
            eprintln!(
                "skipping: RIPTIDE_TEST_POSTGRES_URL is not set (scripts/test.sh starts a throwaway PostgreSQL and sets it)"
            );
            return None;
        };
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "rt_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let admin = sqlx::PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("RIPTIDE_TEST_POSTGRES_URL={base}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let mut url = reqwest::Url::parse(&base).unwrap();
        url.set_path(&format!("/{name}"));
        Some(Fixture {
            dir: tempfile::tempdir().unwrap(),
            database_url: Some(url.to_string()),
        })
    }

    pub fn config(&self) -> LibraryConfig {
        let mut c = LibraryConfig::new(self.dir.path().join("data"));
        c.database_url = self.database_url.clone();
        c.probe_concurrency = 2;
        c
    }

    pub fn db_target(&self) -> String {
        self.config().database_target()
    }

    pub async fn library(&self) -> Library {
        Library::open(self.config()).await.unwrap()
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.is_some()
    }
}

/// The full sample set from ../shared/media/make-samples.sh, built once per
/// test process (the script locks and caches across processes), or `None`
/// with a printed reason where ../shared is absent.
pub fn samples() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/media/make-samples.sh");
        if !script.exists() {
            eprintln!(
                "skipping: {} is absent (a plain clone without ../shared)",
                script.display()
            );
            return None;
        }
        let dir = std::env::var_os("MEDIA_SAMPLES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("riptide-media-samples-full"));
        std::fs::create_dir_all(&dir).unwrap();
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .output()
            .expect("run make-samples.sh");
        assert!(
            out.status.success(),
            "make-samples.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(dir)
    })
    .as_deref()
}

pub fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Copies `rel` paths of the sample set into `to`, keeping folders.
pub fn copy_samples(from: &Path, to: &Path, rels: &[&str]) {
    for r in rels {
        let dst = to.join(r);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(from.join(r), &dst).unwrap();
    }
}

/// Case and punctuation do not count (the manifest's rule for titles).
pub fn loose(s: &str) -> String {
    media_library::search::fold(s).replace(' ', "")
}
