//! `riptide info FILE.torrent`: what a torrent contains.

use crate::units;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// The .torrent file.
    file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let m = super::source::read_torrent_file(&args.file)?;
    let info = &m.info;
    println!("name:         {}", info.name_lossy());
    println!("info hash:    {}", m.info_hash);
    println!(
        "size:         {} ({} bytes)",
        units::bytes(info.total_length()),
        info.total_length()
    );
    println!(
        "pieces:       {} x {}",
        info.num_pieces(),
        units::bytes(u64::from(info.piece_length))
    );
    println!("private:      {}", if info.private { "yes" } else { "no" });
    if let Some(c) = &m.comment {
        println!("comment:      {c}");
    }
    if let Some(c) = &m.created_by {
        println!("created by:   {c}");
    }
    if let Some(d) = m.creation_date {
        println!("created:      {d} (unix time)");
    }
    let tiers = m.trackers();
    if tiers.is_empty() {
        println!("trackers:     none");
    } else {
        println!("trackers:");
        for (i, tier) in tiers.iter().enumerate() {
            for url in tier {
                println!("  tier {i}: {url}");
            }
        }
    }
    for url in &m.url_list {
        println!("web seed:     {url}");
    }
    let real: Vec<_> = info.files.iter().filter(|f| !f.padding).collect();
    println!("files:        {}", real.len());
    for f in real {
        let path = if f.path.is_empty() {
            info.name_lossy()
        } else {
            f.path
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("/")
        };
        println!("  {:>10}  {path}", units::bytes(f.length));
    }
    println!(
        "magnet:       magnet:?xt=urn:btih:{}&dn={}",
        m.info_hash,
        percent(&info.name_lossy())
    );
    Ok(())
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
