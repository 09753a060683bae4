//! One module per scenario of the harness; each appends its rows to the run's table.

pub mod ingest;
pub mod latency;
pub mod ttff;
pub mod webrtc_fanout;
pub mod wsc_fanout;
