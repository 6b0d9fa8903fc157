//! `riptide library scan PATH | list [--json] | search QUERY [--json]`.

use std::path::PathBuf;

use anyhow::Context;
use media_library::{Entry, Library, LibraryConfig, SearchQuery, TmdbConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Where Riptide keeps its database, posters and media.
    #[arg(
        long,
        global = true,
        default_value = "./riptide-data",
        env = "RIPTIDE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite (DATA_DIR/riptide.db).
    #[arg(
        long,
        global = true,
        env = "RIPTIDE_DATABASE_URL",
        value_name = "postgres://…"
    )]
    database_url: Option<String>,
    /// TMDB v3 API key or v4 read access token; without one, films keep
    /// their parsed title and year until a later scan with a key.
    #[arg(
        long,
        global = true,
        env = "RIPTIDE_TMDB_API_KEY",
        hide_env_values = true
    )]
    tmdb_api_key: Option<String>,
    /// TMDB API base URL.
    #[arg(long, global = true, env = "RIPTIDE_TMDB_URL", default_value = media_library::tmdb::DEFAULT_BASE_URL)]
    tmdb_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Add the films in a folder (and its subfolders) to the library.
    Scan { path: PathBuf },
    /// Every film and episode, matched to TMDB or not.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Films whose title starts with the query's words ("amelie" finds
    /// "Amélie"), optionally of one year or codec.
    Search {
        query: String,
        #[arg(long)]
        year: Option<i64>,
        /// h264, hevc/x265, av1, aac, ac3, dts, …
        #[arg(long)]
        codec: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(library(args))
}

async fn library(args: Args) -> anyhow::Result<()> {
    let mut config = LibraryConfig::new(&args.data_dir);
    config.database_url = args.database_url;
    config.tmdb = TmdbConfig {
        api_key: args.tmdb_api_key,
        base_url: args.tmdb_url,
        ..TmdbConfig::default()
    };
    let lib = Library::open(config).await?;
    let result = match args.command {
        Command::Scan { path } => scan(&lib, path).await,
        Command::List { json } => print(lib.list().await?, json),
        Command::Search {
            query,
            year,
            codec,
            json,
        } => print(
            lib.search(&SearchQuery {
                text: query,
                year,
                codec,
            })
            .await?,
            json,
        ),
    };
    lib.close().await;
    result
}

async fn scan(lib: &Library, path: PathBuf) -> anyhow::Result<()> {
    let r = lib.scan(&path).await?;
    println!(
        "scanned {}: {} videos ({} new, {} changed, {} unchanged), {} gone, {} samples and {} extras ignored, {} probed, {} sidecar subtitles, {} matched to TMDB, in {:.2?}",
        r.root.display(),
        r.videos,
        r.added,
        r.updated,
        r.unchanged,
        r.missing,
        r.samples_ignored,
        r.extras_ignored,
        r.probed,
        r.sidecar_subtitles,
        r.matched,
        r.elapsed
    );
    for b in &r.broken {
        println!("broken: {}: {}", b.path, b.reason);
    }
    for p in &r.problems {
        println!("warning: {p}");
    }
    for e in &r.match_errors {
        println!("warning: TMDB: {e}");
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct JsonEntry<'a> {
    id: i64,
    title: &'a str,
    year: Option<i64>,
    tmdb_id: Option<i64>,
    file_path: &'a str,
    video_codec: Option<&'a str>,
    audio_codec: Option<&'a str>,
    duration: Option<f64>,
    season: Option<i64>,
    episode: Option<i64>,
}

fn print(entries: Vec<Entry>, json: bool) -> anyhow::Result<()> {
    if json {
        let out: Vec<JsonEntry> = entries
            .iter()
            .map(|e| JsonEntry {
                id: e.id,
                title: &e.title,
                year: e.year,
                tmdb_id: e.tmdb_id,
                file_path: &e.file_path,
                video_codec: e.video_codec.as_deref(),
                audio_codec: e.audio_codec.as_deref(),
                duration: e.duration,
                season: e.season,
                episode: e.episode,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for e in &entries {
        let year = e.year.map(|y| format!(" ({y})")).unwrap_or_default();
        let ep = match (e.season, e.episode) {
            (Some(s), Some(n)) => format!(" S{s:02}E{n:02}"),
            (None, Some(n)) => format!(" #{n}"),
            _ => String::new(),
        };
        let tmdb = e
            .tmdb_id
            .map_or("unmatched".to_string(), |t| format!("tmdb {t}"));
        let codecs = [e.video_codec.as_deref(), e.audio_codec.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
        let mins = e
            .duration
            .map(|d| format!(", {:.0} min", d / 60.0))
            .unwrap_or_default();
        println!(
            "{:>5}  {}{year}{ep}  [{tmdb}, {codecs}{mins}]  {}",
            e.id, e.title, e.file_path
        );
    }
    if entries.is_empty() {
        println!("no films (run `riptide library scan PATH` first)");
    }
    Ok(())
}
