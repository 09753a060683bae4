//! Sans-IO budget for loss repair: retransmitted bytes are earned by new media bytes sent, a quarter of each, and
//! saved up to a cap. A viewer that really lost packets gets them back (loss above a quarter is beyond repair
//! anyway); a 2 KB RTCP packet naming the whole send history can no longer draw half a megabyte, and repeating it
//! earns nothing. No clock is needed: the budget follows the stream's own rate, whatever it is.

/// Share of every new media byte that becomes repair budget: 1/`EARN_DIVISOR`.
const EARN_DIVISOR: u64 = 4;
/// Most bytes saved up: about a second of a quarter of a 4 Mbit/s stream.
pub const REPAIR_BURST_BYTES: u64 = 128 * 1024;

/// What a new viewer starts with: the losses of a join burst come before much has been earned.
const STARTING_BYTES: u64 = 16 * 1024;

/// Bytes a viewer may still retransmit.
#[derive(Clone, Debug)]
pub struct RepairBudget {
    /// In quarter bytes, so small packets earn exactly.
    quarters: u64,
}

impl Default for RepairBudget {
    fn default() -> Self {
        RepairBudget {
            quarters: STARTING_BYTES * EARN_DIVISOR,
        }
    }
}

impl RepairBudget {
    /// `bytes` of new media went out.
    pub fn earn(&mut self, bytes: u64) {
        self.quarters = (self.quarters + bytes).min(REPAIR_BURST_BYTES * EARN_DIVISOR);
    }

    /// Spends `bytes` on a retransmission if the budget has them.
    pub fn spend(&mut self, bytes: u64) -> bool {
        let cost = bytes * EARN_DIVISOR;
        if cost > self.quarters {
            return false;
        }
        self.quarters -= cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earns_a_quarter_and_saves_up_to_the_cap() {
        let mut b = RepairBudget::default();
        assert!(b.spend(STARTING_BYTES));
        assert!(!b.spend(1), "the start spent, nothing more to repair");
        b.earn(4000);
        assert!(b.spend(1000));
        assert!(!b.spend(1));
        b.earn(100 * 1024 * 1024);
        let mut spent = 0;
        while b.spend(1000) {
            spent += 1000;
        }
        assert!(spent <= REPAIR_BURST_BYTES && spent > REPAIR_BURST_BYTES - 1000);
    }
}
