//! Release names → title, year, season/episode, resolution, source, group,
//! edition, language.
//!
//! Parsing is the `hunch` crate's (a Rust port of guessit's rules),
//! measured against every name in `../shared/media` (ARCHITECTURE.md,
//! Choices). Two things are ours: hunch normalises sources to
//! "Blu-ray"/"Web"/"DVD" (+ "Rip"), which we map back to the scene
//! spellings people search for (BluRay, WEB-DL, WEBRip, DVDRip); and it
//! drops the `MULTi` tag when the name sits in a folder (and calls it
//! "mul" otherwise), which we read from the name's tokens. Samples and
//! extras are recognised by folder and file-name conventions before hunch
//! is asked, so ignoring them costs nothing.

use hunch::Property;
use serde::Serialize;

/// What a file name says about the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReleaseName {
    pub title: String,
    pub year: Option<i64>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
    /// As written, e.g. "1080p".
    pub resolution: Option<String>,
    /// Scene spelling: "BluRay", "WEB-DL", "WEBRip", "DVDRip", "HDTV", …
    pub source: Option<String>,
    pub group: Option<String>,
    /// hunch's readable form: "Director's Cut", "Extended", "Remastered".
    pub edition: Option<String>,
    /// "French", "Multi", …
    pub language: Option<String>,
    pub crc32: Option<String>,
    pub is_sample: bool,
    pub is_extra: bool,
}

impl ReleaseName {
    pub fn is_episode(&self) -> bool {
        self.episode.is_some() || self.season.is_some()
    }
}

/// Folder names that hold extras rather than the feature (Plex/Jellyfin
/// conventions plus the scene's "Sample").
const EXTRA_DIRS: &[&str] = &[
    "extras",
    "featurettes",
    "behind the scenes",
    "deleted scenes",
    "interviews",
    "trailers",
    "shorts",
    "bonus",
];
const EXTRA_SUFFIXES: &[&str] = &[
    "-trailer",
    "-featurette",
    "-behindthescenes",
    "-deleted",
    "-interview",
    "-short",
    "-extra",
];

/// Why a path is not a feature, judged from names alone (cheap; the walk
/// calls it for every file).
pub fn ignored_by_name(rel_path: &str) -> Option<Ignored> {
    let mut parts = rel_path.rsplit('/');
    let file = parts.next().unwrap_or("");
    let stem = file
        .rsplit_once('.')
        .map_or(file, |(s, _)| s)
        .to_ascii_lowercase();
    for dir in parts {
        let d = dir.to_ascii_lowercase();
        if d == "sample" || d == "samples" {
            return Some(Ignored::Sample);
        }
        if EXTRA_DIRS.contains(&d.as_str()) {
            return Some(Ignored::Extra);
        }
    }
    if stem == "sample"
        || stem.ends_with("-sample")
        || stem.ends_with(".sample")
        || stem.ends_with("_sample")
        || stem.starts_with("sample-")
        || stem.starts_with("sample.")
    {
        return Some(Ignored::Sample);
    }
    if EXTRA_SUFFIXES.iter().any(|s| stem.ends_with(s)) {
        return Some(Ignored::Extra);
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Sample,
    Extra,
}

/// Parses a path relative to the scanned folder (`/`-separated): folder
/// names help, e.g. `Amélie (2001)/Amélie.2001.FRENCH.DVDRip…avi` or
/// `Breaking Bad/Season 02/…`.
pub fn parse(rel_path: &str) -> ReleaseName {
    let file = rel_path.rsplit('/').next().unwrap_or(rel_path);
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    // hunch is a large rule set fed with names from disk; a panic in it
    // must cost one file its metadata, not the whole scan.
    let h = match std::panic::catch_unwind(|| hunch::hunch(rel_path)) {
        Ok(h) => h,
        Err(_) => {
            return ReleaseName {
                title: stem.replace(['.', '_'], " ").trim().to_string(),
                ..ReleaseName::default()
            };
        }
    };
    let others = h.other();
    let num = |p: Property| h.first(p).and_then(|v| v.parse::<i64>().ok());
    // "2001.A.Space.Odyssey.1968": hunch lists 2001 and 1968; the release
    // year is the last one (the first belongs to the title).
    let year = h.all(Property::Year).last().and_then(|y| y.parse().ok());
    let upper = stem.to_ascii_uppercase();
    let tokens: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .collect();
    let has = |t: &str| tokens.contains(&t);
    let rip = others.contains(&"Rip");
    let source = h.source().map(|s| {
        match s {
            "Blu-ray" => "BluRay",
            "Ultra HD Blu-ray" => "UHD BluRay",
            "Web" if rip || has("WEBRIP") => "WEBRip",
            "Web" if has("WEB-DL") || has("WEBDL") || upper.contains("WEB.DL") => "WEB-DL",
            "Web" => "WEB",
            "DVD" if rip || has("DVDRIP") => "DVDRip",
            "HDTV" if rip || has("HDTVRIP") => "HDTVRip",
            other => other,
        }
        .to_string()
    });
    // hunch says "mul" for MULTi in a bare file name and nothing at all
    // when the same name sits in a folder.
    let language = h
        .language()
        .map(|l| if l == "mul" { "Multi" } else { l }.to_string())
        .or_else(|| (has("MULTI") || has("MULTI-AUDIO")).then(|| "Multi".to_string()));
    let title = h
        .title()
        .map(str::to_string)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| stem.replace(['.', '_'], " ").trim().to_string());
    let by_name = ignored_by_name(rel_path);
    ReleaseName {
        title,
        year,
        season: num(Property::Season),
        episode: num(Property::Episode),
        resolution: h.screen_size().map(str::to_string),
        source,
        group: h.release_group().map(str::to_string),
        edition: h.edition().map(str::to_string),
        language,
        crc32: h.first(Property::Crc).map(str::to_string),
        is_sample: by_name == Some(Ignored::Sample) || others.contains(&"Sample"),
        is_extra: by_name == Some(Ignored::Extra) || h.is_extra(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scene_names() {
        let r = parse("Tears.of.Steel.2012.720p.WEB-DL.AAC2.0.H.264-GRP.mp4");
        assert_eq!(r.title, "Tears of Steel");
        assert_eq!(r.year, Some(2012));
        assert_eq!(r.resolution.as_deref(), Some("720p"));
        assert_eq!(r.source.as_deref(), Some("WEB-DL"));
        assert_eq!(r.group.as_deref(), Some("GRP"));
        let r = parse("Leon.The.Professional.1994.EXTENDED.1080p.WEBRip.VP9.Opus-GRP.webm");
        assert_eq!(r.source.as_deref(), Some("WEBRip"));
        assert_eq!(r.edition.as_deref(), Some("Extended"));
        let r = parse("Alien.1979.DC.MULTi.1080p.BluRay.x264.AC3-GRP.mkv");
        assert_eq!(
            (r.source.as_deref(), r.language.as_deref()),
            (Some("BluRay"), Some("Multi"))
        );
        let r = parse("2001.A.Space.Odyssey.1968.1080p.BluRay.x265.10bit.TrueHD.5.1-GRP.mkv");
        assert_eq!(
            (r.title.as_str(), r.year),
            ("2001 A Space Odyssey", Some(1968))
        );
    }

    #[test]
    fn episodes() {
        let r =
            parse("tv/Breaking Bad/Season 02/Breaking.Bad.S02E05.720p.WEB-DL.DDP5.1.H.264-GRP.mkv");
        assert_eq!(
            (r.title.as_str(), r.season, r.episode),
            ("Breaking Bad", Some(2), Some(5))
        );
        assert!(r.is_episode());
    }

    #[test]
    fn samples_and_extras_by_name() {
        assert_eq!(
            ignored_by_name("x/Sample/the.thing.1982.1080p.bluray.x264-grp-sample.mkv"),
            Some(Ignored::Sample)
        );
        assert_eq!(ignored_by_name("x/movie-sample.mkv"), Some(Ignored::Sample));
        assert_eq!(
            ignored_by_name("Film (2000)/Extras/making of.mkv"),
            Some(Ignored::Extra)
        );
        assert_eq!(
            ignored_by_name("Film (2000)/Film-trailer.mp4"),
            Some(Ignored::Extra)
        );
        assert_eq!(ignored_by_name("Samples.Of.Life.2001.mkv"), None);
        assert!(parse("Sample/x-sample.mkv").is_sample);
    }

    #[test]
    fn odd_names_never_panic_and_keep_a_title() {
        for name in [
            "",
            ".",
            "....mkv",
            "-",
            "[].mkv",
            "1080p.mkv",
            "ß.mkv",
            "a/b/c",
        ] {
            let r = parse(name);
            let _ = r.title;
        }
        assert_eq!(parse("Home Video.mkv").title, "Home Video");
    }
}
