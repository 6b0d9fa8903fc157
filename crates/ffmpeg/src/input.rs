//! Turning a path into an ffmpeg input argument that cannot be mistaken for
//! an option or a protocol.

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
}
