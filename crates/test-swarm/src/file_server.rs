//! [`FileServer`]: a small HTTP/1.1 server for a directory, with `Range`
//! support, on a loopback address: what a BEP 19 web seed is. Counts the
//! range requests it answered so a test can tell that it was used.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Serves `root` until dropped. Only 127.0.0.0/8.
#[derive(Debug)]
pub struct FileServer {
    addr: SocketAddr,
    ranges: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    pub fn start(root: &Path, ip: Ipv4Addr) -> FileServer {
        assert!(ip.is_loopback(), "test servers stay on loopback");
        let listener = TcpListener::bind((ip, crate::free_port(ip))).expect("bind file server");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let ranges = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, r, s) = (root.to_path_buf(), ranges.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (root, r) = (root.clone(), r.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, &root, &r);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FileServer { addr, ranges, stop }
    }

    /// `http://ip:port/` (ends in `/`, as BEP 19 base URLs do).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Range requests answered with 206 so far.
    pub fn range_requests(&self) -> u64 {
        self.ranges.load(Ordering::Relaxed)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, root: &Path, ranges: &AtomicU64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range: Option<(u64, Option<u64>)> = None;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("range")
                && let Some(spec) = v.trim().strip_prefix("bytes=")
                && let Some((a, b)) = spec.split_once('-')
            {
                range = a.parse().ok().map(|a| (a, b.parse().ok()));
            }
        }
        let Some(file) = local_path(root, &path) else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let Ok(mut f) = std::fs::File::open(&file) else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let size = f.metadata()?.len();
        let (start, end) = match range {
            Some((a, b)) => (
                a,
                b.unwrap_or(size.saturating_sub(1))
                    .min(size.saturating_sub(1)),
            ),
            None => (0, size.saturating_sub(1)),
        };
        if start > end || start >= size {
            out.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        }
        let len = end - start + 1;
        let head = if range.is_some() {
            ranges.fetch_add(1, Ordering::Relaxed);
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{size}\r\nContent-Length: {len}\r\n\r\n"
            )
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
        };
        out.write_all(head.as_bytes())?;
        f.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut (&mut f).take(len), &mut out)?;
    }
}

/// The file under `root` for a URL path; nothing outside `root`.
fn local_path(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path.split('?').next()?);
    let rel = Path::new(decoded.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
