//! One module per scenario of the harness (live-rewind's `dvr` with its two parts); each appends its rows to the
//! run's table.

pub mod dvr;
pub mod dvr_load;
pub mod dvr_switch;
pub mod ingest;
pub mod latency;
pub mod soak;
pub mod ttff;
pub mod webrtc_fanout;
pub mod wsc_fanout;
