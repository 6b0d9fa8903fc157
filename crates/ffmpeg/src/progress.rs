//! Parsing `ffmpeg -progress pipe:1` output: blocks of `key=value` lines,
//! each closed by `progress=continue` or `progress=end`.

use std::time::Duration;

/// The latest progress block of a running ffmpeg.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Progress {
    pub frame: u64,
    pub fps: f64,
    /// Position in the output (timestamps of what was written).
    pub out_time: Duration,
    /// ffmpeg's own speed estimate (1.0 = realtime); 0 until it has one.
    pub speed: f64,
    pub total_size: u64,
    /// `progress=end` was seen: ffmpeg finished writing.
    pub ended: bool,
}

/// Accumulates lines until a block is complete.
#[derive(Debug, Default)]
pub struct ProgressParser {
    current: Progress,
}

impl ProgressParser {
    /// Feeds one line; returns the block when `line` closed it.
    pub fn line(&mut self, line: &str) -> Option<Progress> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        let c = &mut self.current;
        match key {
            "frame" => c.frame = value.parse().unwrap_or(c.frame),
            "fps" => c.fps = value.parse().unwrap_or(c.fps),
            // `out_time_ms` is microseconds too (a historical misnomer);
            // `out_time_us` is the honest name. N/A before the first packet.
            "out_time_us" | "out_time_ms" => {
                if let Ok(us) = value.parse::<i64>() {
                    c.out_time = Duration::from_micros(us.max(0) as u64);
                }
            }
            "speed" => {
                if let Ok(s) = value.trim_end_matches('x').trim().parse::<f64>() {
                    c.speed = if s.is_finite() { s } else { 0.0 };
                }
            }
            "total_size" => c.total_size = value.parse().unwrap_or(c.total_size),
            "progress" => {
                c.ended = value == "end";
                return Some(c.clone());
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_blocks() {
        let text = "frame=0\nfps=0.00\nout_time_us=N/A\nspeed=N/A\nprogress=continue\n\
                    frame=240\nfps=31.5\nout_time_us=10005334\nout_time=00:00:10.005334\n\
                    total_size=12345\nspeed=30.3x\nprogress=end\n";
        let mut p = ProgressParser::default();
        let blocks: Vec<Progress> = text.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].out_time, Duration::ZERO);
        assert!(!blocks[0].ended);
        let last = &blocks[1];
        assert_eq!(last.frame, 240);
        assert_eq!(last.out_time, Duration::from_micros(10_005_334));
        assert_eq!(last.speed, 30.3);
        assert_eq!(last.total_size, 12345);
        assert!(last.ended);
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec(".*", 0..20)) {
            let mut p = ProgressParser::default();
            for l in &lines { let _ = p.line(l); }
        }
    }
}
