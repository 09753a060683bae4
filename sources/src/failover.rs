//! Sans-IO planner for a stream's inputs: which input to try next and when, exponential back-off with jitter,
//! when to probe a higher-priority input again after a fail-over, and when to check whether a camera that went
//! away answers again.
//!
//! A camera that was delivering a moment ago is most likely rebooting or behind a network blip: its back-off
//! stays short (250 ms doubling to 2 s for a minute after it last delivered). While any input waits out its
//! back-off, the caller may check its port cheaply (a TCP connect, no RTSP) on a short interval (250 ms while
//! recently healthy, 1 s after that); a port seen closed and then open again means the camera came back, and
//! the real reconnect goes at once instead of when the back-off ends. An open port that was never seen closed
//! does not shorten anything, so a camera that answers TCP but refuses RTSP still gets the ordinary back-off:
//! at most one early attempt per closed→open change, and the checks themselves are bounded by their interval.
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
    /// An input that delivered within this window before it failed is "recently healthy".
    pub recent_window: Duration,
    /// Back-off of a recently healthy input: first wait.
    pub recent_backoff_min: Duration,
    /// Back-off of a recently healthy input: longest wait.
    pub recent_backoff_max: Duration,
    /// Port checks of a waiting, recently healthy input: at most one per this interval.
    pub port_check_recent_every: Duration,
    /// Port checks of any other waiting input: at most one per this interval.
    pub port_check_every: Duration,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            retry_primary_after: Duration::from_secs(60),
            recent_window: Duration::from_secs(60),
            recent_backoff_min: Duration::from_millis(250),
            recent_backoff_max: Duration::from_secs(2),
            port_check_recent_every: Duration::from_millis(250),
            port_check_every: Duration::from_secs(1),
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
    /// Whether the caller can check this input's port (an RTSP input; not the test pattern).
    checkable: bool,
    /// When this input last delivered (connected, or its session ended after delivering).
    last_healthy: Option<Instant>,
    /// When its port was last checked.
    last_check: Option<Instant>,
    /// A check found the port closed since it last delivered or since a check last ended its back-off.
    seen_closed: bool,
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
                    checkable: false,
                    last_healthy: None,
                    last_check: None,
                    seen_closed: false,
                })
                .collect(),
            policy,
            active: None,
            last_probe: None,
        }
    }

    /// Marks which inputs the caller can check with a cheap port check while they wait out a back-off.
    pub fn with_port_checks(mut self, checkable: &[bool]) -> Self {
        for (slot, &c) in self.slots.iter_mut().zip(checkable) {
            slot.checkable = c;
        }
        self
    }

    fn recently_healthy(&self, i: usize, now: Instant) -> bool {
        self.slots[i]
            .last_healthy
            .is_some_and(|t| now.saturating_duration_since(t) < self.policy.recent_window)
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
        slot.last_healthy = Some(now);
        slot.seen_closed = false;
        self.active = Some(input);
        self.last_probe = Some(now);
    }

    /// Input `input` failed to open, or the active session ended. `jitter` in [-1, 1] spreads retries of many
    /// streams (±20 %). Returns the back-off applied.
    pub fn on_failed(&mut self, input: usize, now: Instant, jitter: f64) -> Duration {
        if self.active == Some(input) {
            self.active = None;
            // It delivered until now.
            self.slots[input].last_healthy = Some(now);
        }
        let recent = self.recently_healthy(input, now);
        let slot = &mut self.slots[input];
        slot.failures = slot.failures.saturating_add(1);
        let wait = if recent {
            let p = FailoverPolicy {
                backoff_min: self.policy.recent_backoff_min,
                backoff_max: self.policy.recent_backoff_max,
                ..self.policy.clone()
            };
            backoff(&p, slot.failures, jitter)
        } else {
            backoff(&self.policy, slot.failures, jitter)
        };
        slot.not_before = Some(now + wait);
        wait
    }

    /// The next port check to run: the input and when. Only inputs still waiting out a back-off at `now` are
    /// checked; `None` when no check is wanted (nothing waits, or no waiting input can be checked).
    pub fn next_port_check(&self, now: Instant) -> Option<(usize, Instant)> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].checkable)
            .filter(|&i| self.slots[i].not_before.is_some_and(|t| t > now))
            .map(|i| {
                let every = if self.recently_healthy(i, now) {
                    self.policy.port_check_recent_every
                } else {
                    self.policy.port_check_every
                };
                let at = self.slots[i]
                    .last_check
                    .map_or(now, |t| (t + every).max(now));
                (i, at)
            })
            .min_by_key(|&(i, at)| (at, self.rank(i)))
    }

    /// A port check of `input` finished at `now`. A port that was seen closed since the last failure and answers
    /// now means the camera is back: its back-off ends at once. Returns true when that happened.
    pub fn on_port_check(&mut self, input: usize, now: Instant, open: bool) -> bool {
        let slot = &mut self.slots[input];
        slot.last_check = Some(now);
        if !open {
            slot.seen_closed = true;
            return false;
        }
        if slot.seen_closed && slot.not_before.is_some_and(|t| t > now) {
            slot.seen_closed = false;
            slot.not_before = Some(now);
            return true;
        }
        false
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
        assert_eq!(p.on_failed(0, t0, 0.0), ms(250));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_camera_that_just_dropped_backs_off_briefly_then_as_usual() {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[0], FailoverPolicy::default());
        p.on_connected(0, t0);
        let dropped = t0 + secs(100);
        let mut now = dropped;
        let mut waits = Vec::new();
        for _ in 0..6 {
            let w = p.on_failed(0, now, 0.0);
            waits.push(w.as_millis());
            now += w;
        }
        assert_eq!(waits, vec![250, 500, 1000, 2000, 2000, 2000]);
        // A minute after it last delivered, the ordinary back-off (by failure count) applies again.
        assert_eq!(p.on_failed(0, dropped + secs(61), 0.0), secs(30));
    }

    /// A camera that is up except during `outages` (start, end); port checks and attempts are instant.
    struct SimCamera {
        outages: Vec<(Duration, Duration)>,
    }

    impl SimCamera {
        fn up(&self, since_t0: Duration) -> bool {
            !self
                .outages
                .iter()
                .any(|&(a, b)| since_t0 >= a && since_t0 < b)
        }
    }

    #[derive(Debug, Default)]
    struct SimReport {
        /// Per outage: time from the camera's return to the reconnect.
        noticed_after: Vec<Duration>,
        attempts: usize,
        checks: usize,
    }

    /// Drives the planner as the ingest task does, in simulated time, until `end`. The session ends at the start
    /// of each outage; while it waits, the planner's port checks and attempts run against the simulated camera.
    fn simulate(cam: &SimCamera, end: Duration, jitter: f64) -> SimReport {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[0], FailoverPolicy::default()).with_port_checks(&[true]);
        let mut report = SimReport::default();
        p.on_connected(0, t0);
        for &(down, back) in &cam.outages {
            let mut now = t0 + down;
            p.on_failed(0, now, jitter);
            loop {
                let attempt = p.next_attempt(now);
                let check = p.next_port_check(now);
                match check {
                    Some((i, at)) if at < attempt.at => {
                        now = at;
                        report.checks += 1;
                        p.on_port_check(i, now, cam.up(now - t0));
                    }
                    _ => {
                        now = attempt.at;
                        report.attempts += 1;
                        if cam.up(now - t0) {
                            p.on_connected(0, now);
                            report.noticed_after.push((now - t0).saturating_sub(back));
                            break;
                        }
                        p.on_failed(0, now, jitter);
                    }
                }
                assert!(now - t0 < end, "never reconnected");
            }
        }
        report
    }

    #[test]
    fn a_returning_camera_is_noticed_within_a_second_of_any_outage() {
        // Outages from 100 ms to 20 minutes, each starting 30 s after the previous return, at both jitter ends.
        let lengths_ms = [
            100, 300, 900, 2_000, 5_000, 10_000, 10_100, 33_333, 59_000, 61_000, 300_000, 1_200_000,
        ];
        for jitter in [-1.0, 0.0, 1.0] {
            let mut at = secs(10);
            let mut outages = Vec::new();
            for &l in &lengths_ms {
                outages.push((at, at + ms(l)));
                at += ms(l) + secs(30);
            }
            let r = simulate(&SimCamera { outages }, at, jitter);
            assert_eq!(r.noticed_after.len(), lengths_ms.len());
            for (l, d) in lengths_ms.iter().zip(&r.noticed_after) {
                assert!(
                    *d <= secs(1),
                    "outage of {l} ms noticed {d:?} after return (jitter {jitter})"
                );
            }
        }
    }

    #[test]
    fn a_camera_that_stays_away_is_checked_at_a_bounded_rate() {
        // One outage of an hour: at most 4 checks a second in the first minute, 1 a second after; real RTSP
        // attempts follow the back-off (2 s for a minute, then up to 30 s).
        let hour = secs(3600);
        let r = simulate(
            &SimCamera {
                outages: vec![(secs(1), secs(1) + hour)],
            },
            hour + secs(10),
            0.0,
        );
        assert!(r.checks <= 60 * 4 + 3600, "{} checks", r.checks);
        assert!(r.checks >= 3000, "{} checks: the port is watched", r.checks);
        assert!(r.attempts <= 40 + 3600 / 30 + 10, "{} attempts", r.attempts);
        assert!(r.noticed_after[0] <= secs(1));
    }

    #[test]
    fn an_open_port_that_refuses_rtsp_does_not_shorten_the_back_off() {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[0], FailoverPolicy::default()).with_port_checks(&[true]);
        let mut now = t0;
        let mut attempts = 0;
        p.on_failed(0, now, 0.0);
        while now < t0 + secs(600) {
            let attempt = p.next_attempt(now);
            match p.next_port_check(now) {
                Some((i, at)) if at < attempt.at => {
                    now = at;
                    assert!(!p.on_port_check(i, now, true));
                }
                _ => {
                    now = attempt.at;
                    attempts += 1;
                    p.on_failed(0, now, 0.0);
                }
            }
        }
        // Never delivered: 1, 2, 4, 8, 16, then every 30 s.
        assert!(
            attempts <= 6 + 600 / 30,
            "{attempts} attempts in 10 minutes"
        );
    }

    #[test]
    fn a_closed_then_open_port_ends_the_back_off_once() {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[0], FailoverPolicy::default()).with_port_checks(&[true]);
        for _ in 0..6 {
            p.on_failed(0, t0, 0.0);
        }
        assert_eq!(p.next_attempt(t0).at, t0 + secs(30));
        assert_eq!(p.next_port_check(t0), Some((0, t0)));
        assert!(!p.on_port_check(0, t0, false));
        assert_eq!(p.next_port_check(t0), Some((0, t0 + secs(1))));
        assert!(p.on_port_check(0, t0 + secs(1), true));
        assert_eq!(p.next_attempt(t0 + secs(1)).at, t0 + secs(1));
        assert_eq!(p.next_port_check(t0 + secs(1)), None, "nothing waits");
        // The early attempt fails (RTSP not up yet): the port stays open, so the back-off is not cut again.
        p.on_failed(0, t0 + secs(1), 0.0);
        assert!(!p.on_port_check(0, t0 + secs(2), true));
        assert_eq!(p.next_attempt(t0 + secs(2)).at, t0 + secs(31));
    }

    #[test]
    fn inputs_that_cannot_be_checked_get_no_checks() {
        let t0 = Instant::now();
        let mut p = FailoverPlanner::new(&[0, 1], FailoverPolicy::default())
            .with_port_checks(&[false, true]);
        p.on_failed(0, t0, 0.0);
        assert_eq!(p.next_port_check(t0), None);
        p.on_failed(1, t0, 0.0);
        assert_eq!(p.next_port_check(t0), Some((1, t0)));
    }
}
