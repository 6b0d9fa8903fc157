//! Transfer rate estimation from per-second samples.

/// Seconds of history averaged into a rate.
const WINDOW: usize = 5;

/// A byte counter that yields a rate averaged over the last few seconds.
///
/// Call [`RateMeter::add`] as bytes move and [`RateMeter::tick`] once per
/// second; the rate is the mean of the last `WINDOW` complete seconds, so it
/// reacts within a few seconds without flapping on bursts.
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    total: u64,
    current: u64,
    samples: [u64; WINDOW],
    filled: usize,
    next: usize,
    peak: u64,
}

impl RateMeter {
    pub fn add(&mut self, bytes: u64) {
        self.total += bytes;
        self.current += bytes;
    }

    pub fn tick(&mut self) {
        self.samples[self.next] = self.current;
        self.next = (self.next + 1) % WINDOW;
        self.filled = (self.filled + 1).min(WINDOW);
        self.current = 0;
        self.peak = self.peak.max(self.rate());
    }

    /// Bytes per second.
    pub fn rate(&self) -> u64 {
        if self.filled == 0 {
            return self.current;
        }
        self.samples.iter().sum::<u64>() / self.filled as u64
    }

    /// Bytes in the most recent complete second.
    pub fn last_second(&self) -> u64 {
        if self.filled == 0 {
            return 0;
        }
        self.samples[(self.next + WINDOW - 1) % WINDOW]
    }

    pub fn peak(&self) -> u64 {
        self.peak
    }

    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_the_window() {
        let mut m = RateMeter::default();
        m.add(1000);
        m.tick();
        assert_eq!(m.rate(), 1000);
        m.add(3000);
        m.tick();
        assert_eq!(m.rate(), 2000);
        for _ in 0..WINDOW {
            m.tick();
        }
        assert_eq!(m.rate(), 0);
        assert_eq!(m.total(), 4000);
        assert_eq!(m.peak(), 2000);
    }
}
