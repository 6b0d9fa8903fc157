//! The `riptide` command: the server and its command-line tools.

mod commands;
mod config;
mod progress;
mod server;
mod units;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "riptide",
    version,
    about = "Riptide: a torrent media server that streams while it downloads"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the media server: engine, library, web UI and API
    /// (http://127.0.0.1:8080 by default).
    Serve(commands::serve::Args),
    /// Add a magnet link or .torrent file to a running server.
    Add(commands::client::AddArgs),
    /// List the torrents of a running server.
    Ls(commands::client::LsArgs),
    /// Pause a torrent on a running server.
    Pause(commands::client::IdArgs),
    /// Resume a torrent on a running server.
    Resume(commands::client::IdArgs),
    /// Remove a torrent from a running server (admins).
    Rm(commands::client::RmArgs),
    /// Print the server's route table (method, path, access), for tests
    /// and audits.
    #[command(hide = true)]
    Routes,
    /// Download a torrent (a .torrent file or a magnet link) into a folder.
    Download(commands::download::Args),
    /// Print what a .torrent file contains.
    Info(commands::info::Args),
    /// The movie library: scan folders of films, list, search.
    Library(commands::library::Args),
    /// Play a torrent while it downloads: serve its video over HTTP.
    Stream(commands::stream::Args),
    /// How a file plays on a device (direct play, remux, transcode) and
    /// the built-in device profiles.
    Playback(commands::playback::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIPTIDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Add(args) => commands::client::add(args),
        Command::Ls(args) => commands::client::ls(args),
        Command::Pause(args) => commands::client::pause(args),
        Command::Resume(args) => commands::client::resume(args),
        Command::Rm(args) => commands::client::rm(args),
        Command::Routes => {
            for r in server::routes::specs() {
                println!("{} {} {:?}", r.method, r.path, r.access);
            }
            Ok(())
        }
        Command::Download(args) => commands::download::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Library(args) => commands::library::run(args),
        Command::Stream(args) => commands::stream::run(args),
        Command::Playback(args) => commands::playback::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined, as the user sees it.
            eprintln!("riptide: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
