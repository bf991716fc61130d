//! The one retry-with-backoff policy of strata: the client's long polls
//! and failovers, the metadata writer waiting for a leader, and the peer
//! network reopening a stream all wait this way between attempts.

use std::time::Duration;

/// Delays that double from `first` up to `max`, each with up to a quarter
/// taken off at random (so that many waiters do not retry in step).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(1);
        Self {
            first,
            next: first,
            max: max.max(first),
            seed: seed | 1,
        }
    }

    /// The delay before the next attempt; the one after it is doubled.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // xorshift: spread, not secrecy.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let cut = base / 4;
        let nanos = cut.as_nanos() as u64;
        let off = if nanos == 0 { 0 } else { self.seed % nanos };
        base - Duration::from_nanos(off)
    }

    /// After a success: the next failure starts from the first delay.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_a_bounded_cut() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.next_delay();
            let base = Duration::from_millis(base);
            assert!(d <= base && d >= base - base / 4, "{d:?} for {base:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
