//! Sans-IO planner for a stream's inputs: which input to try next and when, exponential back-off with jitter,
//! and when to probe a higher-priority input again after a fail-over.
//!
//! Time and randomness are inputs (`now`, `jitter`), so every decision is unit-tested without sleeping.

use std::time::{Duration, Instant};

/// Back-off and probing policy.
#[derive(Clone, Debug)]
pub struct FailoverPolicy {
    /// Wait after an input's first failure.
    pub backoff_min: Duration,
    /// Longest wait between two tries of one input.
    pub backoff_max: Duration,
    /// While a lower-priority input runs, how often a better one is probed.
    pub retry_primary_after: Duration,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            retry_primary_after: Duration::from_secs(60),
        }
    }
}

/// The next input to open and the instant to open it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub input: usize,
    pub at: Instant,
}

#[derive(Clone, Debug)]
struct Slot {
    priority: i32,
    failures: u32,
    not_before: Option<Instant>,
}

/// Decides the order and timing of input attempts. Input indices are positions in the list given to `new`.
#[derive(Clone, Debug)]
pub struct FailoverPlanner {
    slots: Vec<Slot>,
    policy: FailoverPolicy,
    active: Option<usize>,
    last_probe: Option<Instant>,
}

impl FailoverPlanner {
    /// `priorities[i]` is input i's priority; lower wins, ties go to the earlier input.
    pub fn new(priorities: &[i32], policy: FailoverPolicy) -> Self {
        FailoverPlanner {
            slots: priorities
                .iter()
                .map(|&priority| Slot {
                    priority,
                    failures: 0,
                    not_before: None,
                })
                .collect(),
            policy,
            active: None,
            last_probe: None,
        }
    }

    fn rank(&self, i: usize) -> (i32, usize) {
        (self.slots[i].priority, i)
    }

    /// The best input allowed to be tried at `now`; if none is, the one whose back-off ends first.
    /// Panics if the planner has no inputs (callers validate that a stream has at least one).
    pub fn next_attempt(&self, now: Instant) -> Attempt {
        let ready = (0..self.slots.len())
            .filter(|&i| self.slots[i].not_before.is_none_or(|t| t <= now))
            .min_by_key(|&i| self.rank(i));
        if let Some(input) = ready {
            return Attempt { input, at: now };
        }
        let input = (0..self.slots.len())
            .min_by_key(|&i| (self.slots[i].not_before, self.rank(i)))
            .expect("at least one input");
        Attempt {
            input,
            at: self.slots[input].not_before.unwrap_or(now),
        }
    }

    /// Input `input` delivered its first keyframe and is now the active one.
    pub fn on_connected(&mut self, input: usize, now: Instant) {
        let slot = &mut self.slots[input];
        slot.failures = 0;
        slot.not_before = None;
        self.active = Some(input);
        self.last_probe = Some(now);
    }

    /// Input `input` failed to open, or the active session ended. `jitter` in [-1, 1] spreads retries of many
    /// streams (±20 %). Returns the back-off applied.
    pub fn on_failed(&mut self, input: usize, now: Instant, jitter: f64) -> Duration {
        if self.active == Some(input) {
            self.active = None;
        }
        let slot = &mut self.slots[input];
        slot.failures = slot.failures.saturating_add(1);
        let wait = backoff(&self.policy, slot.failures, jitter);
        slot.not_before = Some(now + wait);
        wait
    }

    /// A probe of `input` failed: back off that input and wait a full probe interval before the next probe.
    pub fn on_probe_failed(&mut self, input: usize, now: Instant, jitter: f64) {
        self.on_failed(input, now, jitter);
        self.last_probe = Some(now);
    }

    /// True when every input has failed since it last delivered: the stream is offline, not just reconnecting.
    pub fn all_failing(&self) -> bool {
        self.slots.iter().all(|s| s.failures > 0)
    }

    /// While a lower-priority input is active: the better input to probe now, if a probe is due.
    pub fn probe_due(&self, now: Instant) -> Option<usize> {
        let active = self.active?;
        if self
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < self.policy.retry_primary_after)
        {
            return None;
        }
        (0..self.slots.len())
            .filter(|&i| self.rank(i) < self.rank(active))
            .filter(|&i| self.slots[i].not_before.is_none_or(|t| t <= now))
            .min_by_key(|&i| self.rank(i))
    }

    /// When the next probe could become due, for the caller's timer: the probe interval has passed and a better
    /// input's back-off has ended. Never in the past while no probe is due, so a timer on it can't spin.
    pub fn next_probe_at(&self) -> Option<Instant> {
        let active = self.active?;
        let better_ready = (0..self.slots.len())
            .filter(|&i| self.rank(i) < self.rank(active))
            .map(|i| self.slots[i].not_before)
            .min()?;
        let interval_over = self.last_probe.map(|t| t + self.policy.retry_primary_after);
        match (interval_over, better_ready) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `backoff_min · 2^(failures−1)`, capped at `backoff_max`, scaled by `1 + 0.2·jitter`.
pub fn backoff(policy: &FailoverPolicy, failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = policy
        .backoff_min
        .saturating_mul(1u32 << exp)
        .min(policy.backoff_max);
    base.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_bounded_jitter() {
        let p = FailoverPolicy::default();
        let waits: Vec<u64> = (1..=7).map(|n| backoff(&p, n, 0.0).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_millis(1200));
        assert_eq!(backoff(&p, 1, -5.0), Duration::from_millis(800));
        assert_eq!(backoff(&p, u32::MAX, 0.0), secs(30));
    }

    #[test]
    fn fails_over_in_priority_order_then_waits_for_the_soonest() {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[5, 1, 3], FailoverPolicy::default());
        assert_eq!(p.next_attempt(t0), Attempt { input: 1, at: t0 });
        p.on_failed(1, t0, 0.0);
        assert_eq!(p.next_attempt(t0).input, 2);
        p.on_failed(2, t0, 0.0);
        assert!(!p.all_failing());
        p.on_failed(0, t0, 0.0);
        assert!(p.all_failing());
        // Every input waits 1 s; the best priority goes first.
        assert_eq!(
            p.next_attempt(t0),
            Attempt {
                input: 1,
                at: t0 + secs(1)
            }
        );
        p.on_failed(1, t0 + secs(1), 0.0);
        // Input 1 now waits 2 s, so input 2 (ready at 1 s) goes next.
        assert_eq!(p.next_attempt(t0 + secs(1)).input, 2);
    }

    #[test]
    fn probes_the_primary_periodically_after_fail_over() {
        let t0 = Instant::now();
        let policy = FailoverPolicy {
            retry_primary_after: secs(60),
            ..Default::default()
        };
        let mut p = FailoverPlanner::new(&[0, 1], policy);
        p.on_failed(0, t0, 0.0);
        p.on_connected(1, t0);
        assert_eq!(p.probe_due(t0 + secs(59)), None);
        assert_eq!(p.next_probe_at(), Some(t0 + secs(60)));
        assert_eq!(p.probe_due(t0 + secs(60)), Some(0));
        p.on_probe_failed(0, t0 + secs(60), 0.0);
        assert_eq!(p.probe_due(t0 + secs(119)), None);
        assert_eq!(p.probe_due(t0 + secs(120)), Some(0));
        p.on_connected(0, t0 + secs(120));
        assert_eq!(
            p.probe_due(t0 + secs(1000)),
            None,
            "the best input needs no probe"
        );
        assert_eq!(p.next_probe_at(), None);
    }

    #[test]
    fn probe_timer_waits_for_the_better_inputs_back_off() {
        let t0 = Instant::now();
        let policy = FailoverPolicy {
            retry_primary_after: secs(1),
            ..Default::default()
        };
        let mut p = FailoverPlanner::new(&[0, 1], policy);
        for _ in 0..6 {
            p.on_failed(0, t0, 0.0);
        }
        p.on_connected(1, t0);
        // Probing is allowed after 1 s, but the primary backs off for 30 s: the timer says 30 s, not 1 s.
        assert_eq!(p.probe_due(t0 + secs(2)), None);
        assert_eq!(p.next_probe_at(), Some(t0 + secs(30)));
        assert_eq!(p.probe_due(t0 + secs(30)), Some(0));
    }

    #[test]
    fn success_resets_backoff() {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[0], FailoverPolicy::default());
        for _ in 0..5 {
            p.on_failed(0, t0, 0.0);
        }
        p.on_connected(0, t0);
        assert_eq!(p.on_failed(0, t0, 0.0), secs(1));
    }
}
