//! Turning a path or URL into an ffmpeg input argument that cannot be
//! mistaken for an option or a protocol.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0} is not a valid UTF-8 path; ffmpeg cannot be given it safely")]
    NotUtf8(PathBuf),
    #[error("{0}: path contains a newline or NUL")]
    ControlCharacter(PathBuf),
    #[error("cannot resolve {path}: {source}")]
    Resolve {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0:?} is not an http:// or https:// URL without spaces or control characters; \
         only those are handed to ffmpeg"
    )]
    BadUrl(String),
}

/// What ffmpeg reads: a local file, or an HTTP(S) URL such as
/// `riptide stream`'s `http://127.0.0.1:PORT/stream/{info_hash}/{file}`,
/// which serves a torrent's file in order while it downloads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    File(PathBuf),
    Url(String),
}

impl Input {
    /// A path or an `http(s)://` URL. Anything else that looks like a
    /// protocol (`concat:`, `pipe:`, `file:`) is taken as a file name.
    pub fn parse(s: &str) -> Input {
        if s.starts_with("http://") || s.starts_with("https://") {
            Input::Url(s.to_string())
        } else {
            Input::File(PathBuf::from(s))
        }
    }

    /// The argument to put after `-i`.
    pub fn arg(&self) -> Result<String, InputError> {
        match self {
            Input::File(p) => input_arg(p),
            Input::Url(u) => url_arg(u),
        }
    }

    /// Protocols ffmpeg may open for this input (`-protocol_whitelist`), so
    /// that a hostile file posing as a playlist cannot make ffmpeg open
    /// other files or hosts through `concat:`, `subfile:` or `http:`.
    pub fn protocol_whitelist(&self) -> &'static str {
        match self {
            Input::File(_) => "file",
            Input::Url(_) => "http,https,tcp,tls",
        }
    }

    pub fn is_url(&self) -> bool {
        matches!(self, Input::Url(_))
    }

    /// The local path, if this is a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Input::File(p) => Some(p),
            Input::Url(_) => None,
        }
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Url(u) => f.write_str(u),
        }
    }
}

/// `file:/absolute/path`: the `file:` protocol prefix stops ffmpeg from
/// reading `concat:`, `pipe:`, `http:` or a leading `-` in the name as
/// anything but a local file.
pub fn input_arg(path: &Path) -> Result<String, InputError> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|source| InputError::Resolve {
                path: path.to_path_buf(),
                source,
            })?
            .join(path)
    };
    let s = abs
        .to_str()
        .ok_or_else(|| InputError::NotUtf8(abs.clone()))?;
    if s.contains(['\n', '\r', '\0']) {
        return Err(InputError::ControlCharacter(abs.clone()));
    }
    Ok(format!("file:{s}"))
}

/// Output paths get the same treatment as inputs: an output named
/// `pipe:1` or `-y` must stay a file.
pub fn output_arg(path: &Path) -> Result<String, InputError> {
    input_arg(path)
}

fn url_arg(url: &str) -> Result<String, InputError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
            && !url.contains('|')
    });
    if ok {
        Ok(url.to_string())
    } else {
        Err(InputError::BadUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_stay_files() {
        for name in [
            "-i",
            "concat:a.mp4|b.mp4",
            "x;rm -rf ~",
            "|cat",
            "file:x",
            "http://evil/",
        ] {
            let arg = input_arg(&Path::new("/media").join(name)).unwrap();
            assert!(arg.starts_with("file:/media/"), "{arg}");
        }
        assert!(input_arg(Path::new("/media/a\nb")).is_err());
        assert!(
            input_arg(Path::new("rel.mkv"))
                .unwrap()
                .starts_with("file:/")
        );
    }

    #[test]
    fn only_plain_http_urls() {
        assert_eq!(
            Input::parse("http://127.0.0.1:1/stream/ab/0")
                .arg()
                .unwrap(),
            "http://127.0.0.1:1/stream/ab/0"
        );
        for bad in [
            "http://",
            "http:///etc/passwd",
            "http://a b",
            "http://a\n-i",
            "https://x|y",
        ] {
            assert!(Input::Url(bad.into()).arg().is_err(), "{bad:?}");
        }
        // Anything not http(s) is a file name, whatever it looks like.
        for s in ["concat:a|b", "pipe:0", "ftp://x", "-i"] {
            assert!(matches!(Input::parse(s), Input::File(_)), "{s}");
            assert!(Input::parse(s).arg().unwrap().starts_with("file:/"));
        }
    }
}
