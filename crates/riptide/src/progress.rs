//! Download progress on the terminal.

use crate::units;
use bt_engine::{TorrentStats, TorrentStatus};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// A progress bar on a terminal; a plain line every few seconds otherwise
/// (logs of benchmark runs and tests).
pub struct ProgressView {
    bar: Option<ProgressBar>,
    last_line: std::cell::Cell<Instant>,
}

impl ProgressView {
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {percent:>3}% {msg}")
                    .expect("template is valid")
                    .progress_chars("=> "),
            );
            b
        });
        ProgressView {
            bar,
            last_line: std::cell::Cell::new(Instant::now()),
        }
    }

    fn line(s: &TorrentStats) -> String {
        let eta = s.eta.map(units::duration).unwrap_or_else(|| "-".into());
        let what = match s.status {
            TorrentStatus::Seeding => format!("up {}", units::rate(s.upload_rate)),
            _ => format!(
                "{}/{} down {} up {} eta {eta}",
                units::bytes(s.verified_bytes),
                units::bytes(s.total_bytes),
                units::rate(s.download_rate),
                units::rate(s.upload_rate)
            ),
        };
        format!(
            "{} | {what} | peers {} ({} seeds)",
            s.status.as_str(),
            s.peers,
            s.seeds
        )
    }

    pub fn update(&self, s: &TorrentStats) {
        match &self.bar {
            Some(b) => {
                b.set_length(s.total_bytes.max(1));
                b.set_position(s.verified_bytes);
                b.set_message(Self::line(s));
            }
            None => {
                if self.last_line.get().elapsed() >= Duration::from_secs(5) {
                    self.last_line.set(Instant::now());
                    eprintln!("{:5.1}% {}", s.progress() * 100.0, Self::line(s));
                }
            }
        }
    }

    pub fn finish(&self, s: &TorrentStats) {
        if let Some(b) = &self.bar {
            b.set_position(s.verified_bytes);
            b.finish_and_clear();
        }
    }
}
