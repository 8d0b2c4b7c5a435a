//! What keeps one source from flooding the output, and what says the
//! output may be missing something: a per-source rate limit on reports
//! (`throttled` records) and the kernel's lost-event counters turned into
//! `events_lost` records and `incomplete: true` verdicts.

use std::collections::HashMap;

/// A token bucket per source (a container's cgroup, a probed pod's
/// address, the node): `burst` reports at once, then one every
/// `refill_ns`. Sources idle long enough to be full again are forgotten,
/// and at most `max_sources` are held (the stalest go first), so the map is
/// bounded however many containers come and go.
pub struct RateLimiter {
    burst: u32,
    refill_ns: u64,
    max_sources: usize,
    sources: HashMap<String, Bucket>,
    /// Reports suppressed, all sources together (the summary's `throttled`).
    pub suppressed: u64,
}

struct Bucket {
    tokens: u32,
    /// When `tokens` was last topped up.
    refilled_ns: u64,
    /// Suppressed since this source's last `throttled` record.
    suppressed: u64,
    throttling: bool,
}

/// What [`RateLimiter::admit`] decided for one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    Pass,
    /// Dropped, and the source has just started being throttled: say so
    /// once, in the stream.
    ThrottlingStarted,
    /// Dropped, as others from the source already are.
    Dropped,
}

impl Default for RateLimiter {
    /// 20 at once, then one a second: a failing probe every second on
    /// every probe of a pod passes, a flood does not.
    fn default() -> Self {
        Self::new(20, 1_000_000_000, 4096)
    }
}

impl RateLimiter {
    pub fn new(burst: u32, refill_ns: u64, max_sources: usize) -> Self {
        Self { burst: burst.max(1), refill_ns: refill_ns.max(1), max_sources: max_sources.max(1), sources: HashMap::new(), suppressed: 0 }
    }

    pub fn admit(&mut self, source: &str, now_ns: u64) -> Admit {
        if !self.sources.contains_key(source) && self.sources.len() >= self.max_sources {
            self.prune(now_ns);
            if self.sources.len() >= self.max_sources {
                // Still full of busy sources: the stalest one goes.
                if let Some(stalest) = self.sources.iter().min_by_key(|(_, b)| b.refilled_ns).map(|(k, _)| k.clone()) {
                    self.sources.remove(&stalest);
                }
            }
        }
        let (burst, refill_ns) = (self.burst, self.refill_ns);
        let b = self
            .sources
            .entry(source.to_string())
            .or_insert(Bucket { tokens: burst, refilled_ns: now_ns, suppressed: 0, throttling: false });
        let earned = now_ns.saturating_sub(b.refilled_ns) / refill_ns;
        if earned > 0 {
            b.tokens = (b.tokens as u64).saturating_add(earned).min(burst as u64) as u32;
            b.refilled_ns = b.refilled_ns.saturating_add(earned.saturating_mul(refill_ns));
        }
        if b.tokens > 0 {
            b.tokens -= 1;
            b.throttling = false;
            return Admit::Pass;
        }
        self.suppressed = self.suppressed.saturating_add(1);
        b.suppressed = b.suppressed.saturating_add(1);
        if b.throttling {
            Admit::Dropped
        } else {
            b.throttling = true;
            Admit::ThrottlingStarted
        }
    }

    /// Forgets sources whose buckets have refilled (they are as good as new).
    pub fn prune(&mut self, now_ns: u64) {
        let full_after = self.refill_ns.saturating_mul(self.burst as u64);
        self.sources.retain(|_, b| now_ns.saturating_sub(b.refilled_ns) < full_after);
    }

    #[cfg(test)]
    fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Reports suppressed from `source` so far.
    #[cfg(test)]
    fn suppressed_from(&self, source: &str) -> u64 {
        self.sources.get(source).map_or(0, |b| b.suppressed)
    }
}

/// Watches the kernel's lost-event counters: a rise starts (or continues)
/// a period of loss; verdicts made within `window_ns` of a loss are
/// marked incomplete, and an `events_lost` record is due at most once per
/// `record_every_ns`.
pub struct LossTracker {
    window_ns: u64,
    record_every_ns: u64,
    seen_total: u64,
    last_loss_ns: Option<u64>,
    last_record_ns: Option<u64>,
    /// Lost since the last `events_lost` record.
    unreported: u64,
}

/// An `events_lost` record's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossRecord {
    pub lost: u64,
    pub lost_total: u64,
}

impl LossTracker {
    pub fn new(window_ns: u64, record_every_ns: u64) -> Self {
        Self { window_ns, record_every_ns, seen_total: 0, last_loss_ns: None, last_record_ns: None, unreported: 0 }
    }

    /// Takes the kernel's cumulative count of lost events; a record when
    /// one is due.
    pub fn observe(&mut self, lost_total: u64, now_ns: u64) -> Option<LossRecord> {
        if lost_total > self.seen_total {
            self.unreported = self.unreported.saturating_add(lost_total - self.seen_total);
            self.seen_total = lost_total;
            self.last_loss_ns = Some(now_ns);
        }
        if self.unreported == 0 {
            return None;
        }
        if self.last_record_ns.is_some_and(|t| now_ns.saturating_sub(t) < self.record_every_ns) {
            return None;
        }
        self.last_record_ns = Some(now_ns);
        let lost = std::mem::take(&mut self.unreported);
        Some(LossRecord { lost, lost_total: self.seen_total })
    }

    /// Whether a verdict made now may have been decided on incomplete data.
    pub fn incomplete(&self, now_ns: u64) -> bool {
        self.last_loss_ns.is_some_and(|t| now_ns.saturating_sub(t) <= self.window_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_flooding_source_is_throttled_once_and_counted_while_others_pass() {
        let mut rl = RateLimiter::new(5, S, 100);
        let mut started = 0;
        for i in 0..1000 {
            match rl.admit("cgroup:666", i * 1000) {
                Admit::Pass => {}
                Admit::ThrottlingStarted => started += 1,
                Admit::Dropped => {}
            }
        }
        assert_eq!(started, 1, "one throttled record when throttling starts");
        assert_eq!(rl.suppressed, 995);
        assert_eq!(rl.suppressed_from("cgroup:666"), 995);
        // Another source's verdict comes through meanwhile.
        assert_eq!(rl.admit("cgroup:42", 1_000_000), Admit::Pass);
        // The flood's source earns a token a second.
        assert_eq!(rl.admit("cgroup:666", 2 * S), Admit::Pass);
        // Two seconds earned two tokens; past them, throttled again: a new
        // throttled record, then quiet drops.
        let next: Vec<Admit> = (0..3).map(|_| rl.admit("cgroup:666", 2 * S)).collect();
        assert_eq!(next, [Admit::Pass, Admit::ThrottlingStarted, Admit::Dropped]);
    }

    #[test]
    fn sources_are_bounded_and_forgotten_once_refilled() {
        let mut rl = RateLimiter::new(5, S, 100);
        for i in 0..10_000u64 {
            rl.admit(&format!("cgroup:{i}"), i * 1_000_000);
            assert!(rl.sources() <= 100);
        }
        rl.prune(1_000 * S);
        assert_eq!(rl.sources(), 0);
    }

    #[test]
    fn loss_starts_a_record_at_most_once_a_minute_and_marks_verdicts() {
        let mut lt = LossTracker::new(180 * S, 60 * S);
        assert_eq!(lt.observe(0, S), None);
        assert!(!lt.incomplete(S));
        assert_eq!(lt.observe(7, 2 * S), Some(LossRecord { lost: 7, lost_total: 7 }));
        assert!(lt.incomplete(3 * S));
        // More loss within the minute: counted, not recorded yet.
        assert_eq!(lt.observe(10, 30 * S), None);
        assert_eq!(lt.observe(10, 63 * S), Some(LossRecord { lost: 3, lost_total: 10 }));
        assert_eq!(lt.observe(10, 200 * S), None);
        assert!(lt.incomplete(200 * S), "within 180 s of the last loss");
        assert!(!lt.incomplete(211 * S));
    }
}
