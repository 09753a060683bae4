//! Pacing of recorded frames: a DVR player reads ahead of the viewer, and each frame is released when its
//! recorded presentation time, divided by the playback speed, has passed since the frame that anchored the run.
//!
//! The queue is bounded: once it holds [`Pacer::capacity`] items, the viewer stops taking frames from its player,
//! whose bounded channel then fills, and the player's reading thread waits. A paused viewer releases nothing, so
//! pausing costs no reading at all. Player events travel in the same queue, so an event ("gap", "live edge") is
//! acted on when the frames before it have been shown, not when the reader got there.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub::HubFrame;

use super::InputEvent;

/// A frame released this late is not caught up with in a burst: the run is re-anchored at it.
const LATE_REANCHOR: Duration = Duration::from_millis(500);

/// What the queue holds, in the player's order.
#[derive(Debug)]
pub enum Paced {
    Frame(Arc<HubFrame>),
    Event(InputEvent),
}

#[derive(Debug)]
pub struct Pacer {
    queue: VecDeque<Paced>,
    capacity: usize,
    /// When the run's first frame was released and its pts.
    anchor: Option<(Instant, i64)>,
    speed: f64,
    paused: bool,
}

impl Pacer {
    pub fn new(capacity: usize) -> Self {
        Pacer {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            anchor: None,
            speed: 1.0,
            paused: false,
        }
    }

    /// Whether the player may hand over another item.
    pub fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn push(&mut self, item: Paced) {
        self.queue.push_back(item);
    }

    /// Forgets everything queued (a new input) and starts a new run.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.anchor = None;
    }

    /// The next frame is released at once and anchors a new run (play after pause, a gap, a speed change).
    pub fn reanchor(&mut self) {
        self.anchor = None;
    }

    pub fn set_speed(&mut self, speed: f64) {
        self.speed = speed;
        self.anchor = None;
    }

    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        self.anchor = None;
    }

    /// When the front item is due; `None` while paused or empty.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.paused {
            return None;
        }
        Some(match self.queue.front()? {
            Paced::Event(_) => now,
            Paced::Frame(f) => match self.anchor {
                None => now,
                Some((at, pts)) => at + media_to_wall(f.frame.pts_90k - pts, self.speed),
            },
        })
    }

    /// The front item if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Paced> {
        let due = self.next_due(now)?;
        if due > now {
            return None;
        }
        let item = self.queue.pop_front()?;
        if let Paced::Frame(f) = &item {
            if self.anchor.is_none() || now.saturating_duration_since(due) > LATE_REANCHOR {
                self.anchor = Some((now, f.frame.pts_90k));
            }
        }
        Some(item)
    }
}

/// Wall time for `ticks` of 90 kHz media at `speed`; negative deltas (reordered input) are due at once.
fn media_to_wall(ticks: i64, speed: f64) -> Duration {
    if ticks <= 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(ticks as f64 / 90_000.0 / speed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp_out::tests::hf;

    fn frame(pts: i64) -> Paced {
        Paced::Frame(Arc::new(hf(pts == 0, pts, 1)))
    }

    #[test]
    fn releases_by_pts_over_speed() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8);
        p.set_speed(2.0);
        for i in 0..3 {
            p.push(frame(i * 3600));
        }
        assert!(p.pop_due(t0).is_some(), "the first frame anchors at once");
        assert!(p.pop_due(t0 + Duration::from_millis(19)).is_none());
        assert!(
            p.pop_due(t0 + Duration::from_millis(20)).is_some(),
            "40 ms of media at 2x"
        );
        assert_eq!(p.next_due(t0), Some(t0 + Duration::from_millis(40)));
    }

    #[test]
    fn pause_holds_and_play_reanchors() {
        let t0 = Instant::now();
        let mut p = Pacer::new(2);
        p.push(frame(0));
        p.push(frame(3600));
        assert!(!p.has_room());
        p.pop_due(t0);
        p.set_paused(true);
        assert_eq!(p.next_due(t0 + Duration::from_secs(60)), None);
        p.set_paused(false);
        let later = t0 + Duration::from_secs(60);
        assert!(
            p.pop_due(later).is_some(),
            "due at once after play, not 60 s late in a burst"
        );
    }

    #[test]
    fn a_late_frame_reanchors_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(8);
        for i in 0..3 {
            p.push(frame(i * 3600));
        }
        p.pop_due(t0);
        let late = t0 + Duration::from_secs(2);
        assert!(p.pop_due(late).is_some());
        assert_eq!(p.next_due(late), Some(late + Duration::from_millis(40)));
    }
}
