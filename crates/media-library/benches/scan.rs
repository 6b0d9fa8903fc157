//! Scan benchmark (issue 5, acceptance 3): 10,000 video files with
//! realistic release names, ffprobe results already cached, scanned into
//! an empty SQLite database; then a rescan with nothing changed.
//!
//! cargo bench -p media-library --bench scan [-- FILES]
//!
//! Set RIPTIDE_BENCH_POSTGRES_URL=postgres://… to run it against
//! PostgreSQL too. Files are 1 KiB of zeros (nothing reads them: the probe
//! cache answers for every one, as after a first scan of the same films).

use std::path::Path;
use std::time::{Duration, Instant};

use media_library::media_info::MediaSummary;
use media_library::{Library, LibraryConfig};

const TITLES: &[&str] = &[
    "The.Matrix",
    "Amélie",
    "Blade.Runner",
    "2001.A.Space.Odyssey",
    "Leon.The.Professional",
    "Spirited.Away",
    "The.Thing",
    "Se7en",
    "Heat",
    "Jaws",
    "Alien",
    "Aliens",
    "The.Godfather",
    "Pulp.Fiction",
    "Fight.Club",
    "Inception",
    "Interstellar",
    "The.Dark.Knight",
    "Memento",
    "Parasite",
    "Oldboy",
    "Amores.Perros",
    "Cidade.de.Deus",
    "La.Haine",
    "Le.Samouraï",
    "Das.Boot",
    "Metropolis",
    "Nosferatu",
    "M",
    "Ran",
    "Seven.Samurai",
    "Tokyo.Story",
    "Night.of.the.Living.Dead",
    "Big.Buck.Bunny",
    "Sintel",
    "Tears.of.Steel",
    "Elephants.Dream",
];
const TAGS: &[&str] = &[
    "1080p.BluRay.x264-GRP",
    "720p.WEB-DL.AAC2.0.H.264-NTb",
    "2160p.UHD.BluRay.x265.10bit.HDR.DTS-HD.MA.5.1-SWTYBLZ",
    "1080p.WEBRip.x265-RARBG",
    "DVDRip.XviD.MP3-FXG",
    "REMASTERED.1080p.BluRay.x264.DTS-FGT",
    "EXTENDED.1080p.BluRay.x264.AC3-GRP",
    "MULTi.1080p.BluRay.x264.AC3-GRP",
];

fn make_tree(root: &Path, n: usize) -> Vec<(String, i64, i64)> {
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let title = TITLES[i % TITLES.len()];
        let year = 1950 + (i / TITLES.len()) % 75;
        let tag = TAGS[(i / 7) % TAGS.len()];
        let name = format!("{title}.{year}.{tag}");
        // A folder per release, some with the version number a second copy
        // of the same release would get.
        let dir = root.join(format!("{name}.{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = format!("{name}.mkv");
        let path = dir.join(&file);
        std::fs::write(&path, [0u8; 1024]).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        keys.push((file, 1024, m.mtime() * 1_000_000_000 + m.mtime_nsec()));
    }
    keys
}

fn summary() -> MediaSummary {
    MediaSummary {
        container: Some("mkv".into()),
        duration: Some(6000.0),
        video_codec: Some("h264".into()),
        width: Some(1920),
        height: Some(1080),
        audio_codec: Some("aac".into()),
        audio_codecs: vec!["aac".into()],
        subtitles: vec![],
    }
}

async fn run(label: &str, database_url: Option<String>, n: usize) {
    let t = tempfile::tempdir().unwrap();
    let media = t.path().join("films");
    let keys = make_tree(&media, n);
    let mut cfg = LibraryConfig::new(t.path().join("data"));
    cfg.database_url = database_url;
    let lib = Library::open(cfg).await.unwrap();
    let cached: Vec<_> = keys.into_iter().map(|k| (k, Ok(summary()))).collect();
    lib.db().cache_probes(&cached).await.unwrap();

    let t0 = Instant::now();
    let first = lib.scan(&media).await.unwrap();
    let first_t = t0.elapsed();
    assert_eq!(
        (first.added, first.probed, first.probe_cache_hits),
        (n, 0, n)
    );
    let mut rescans: Vec<Duration> = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = lib.scan(&media).await.unwrap();
        rescans.push(t0.elapsed());
        assert_eq!((r.unchanged, r.added, r.updated), (n, 0, 0));
    }
    rescans.sort();
    println!(
        "{label}: first scan of {n} files (probe cache warm): {:.2} s; rescan, nothing changed: median {:.3} s (min {:.3} s, max {:.3} s, 5 runs)",
        first_t.as_secs_f64(),
        rescans[2].as_secs_f64(),
        rescans[0].as_secs_f64(),
        rescans[4].as_secs_f64(),
    );
    assert!(first_t < Duration::from_secs(10), "first scan over 10 s");
    assert!(rescans[2] < Duration::from_secs(1), "rescan over 1 s");
    lib.close().await;
}

fn main() {
    // cargo bench passes "--bench"; a bare number is the file count.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        run("sqlite", None, n).await;
        if let Ok(url) = std::env::var("RIPTIDE_BENCH_POSTGRES_URL") {
            run("postgres", Some(url), n).await;
        }
    });
}
