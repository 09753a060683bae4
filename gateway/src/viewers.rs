//! The one budget of viewer sessions (`max_sessions`), shared by WSC-RTP and WebRTC, and the shutdown flag both
//! publishers look at: a session holds a [`SessionPermit`] for as long as it runs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts open viewer sessions against the configured maximum.
pub struct ViewerBudget {
    open: AtomicUsize,
    max: usize,
    closing: AtomicBool,
}

/// A reserved session place, given back on drop.
pub struct SessionPermit {
    budget: Arc<ViewerBudget>,
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a viewer session could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("{0} viewer sessions are open, the configured maximum")]
    TooManySessions(usize),
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

impl ViewerBudget {
    pub fn new(max: usize) -> Arc<ViewerBudget> {
        Arc::new(ViewerBudget {
            open: AtomicUsize::new(0),
            max,
            closing: AtomicBool::new(false),
        })
    }

    /// Takes a place, or says why there is none.
    pub fn reserve(self: &Arc<Self>) -> Result<SessionPermit, ReserveError> {
        if self.closing() {
            return Err(ReserveError::ShuttingDown);
        }
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        // Built before the check so that a refusal gives the place back through Drop.
        let permit = SessionPermit {
            budget: self.clone(),
        };
        if before >= self.max {
            return Err(ReserveError::TooManySessions(self.max));
        }
        Ok(permit)
    }

    /// Viewer sessions open now, of every kind.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// From now on no session starts, and sessions whose hub closes say the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_drops_give_places_back() {
        let b = ViewerBudget::new(2);
        let p1 = b.reserve().unwrap();
        let _p2 = b.reserve().unwrap();
        assert!(matches!(b.reserve(), Err(ReserveError::TooManySessions(2))));
        assert_eq!(b.open(), 2);
        drop(p1);
        let _p3 = b.reserve().unwrap();
        b.begin_shutdown();
        assert!(matches!(b.reserve(), Err(ReserveError::ShuttingDown)));
        assert_eq!(b.open(), 2);
    }
}
