//! The log filter of the binary (and of the benchmark's gateway process): `RUST_LOG` when set, else `info`.
//!
//! The `rtc` DTLS stack warns on every connection in which it is the DTLS client ("conn.remote_addr is empty,
//! please set explicitly server_name"): the gateway answers offers with `a=setup:active`, and `rtc` 0.21 gives no
//! way to set the name, which WebRTC never checks (peers are authenticated by certificate fingerprint). One
//! warning per viewer would drown the log, so that target is held to errors unless `RUST_LOG` names it.

use tracing_subscriber::EnvFilter;

/// Target of the per-connection warning.
const NOISY_TARGET: &str = "rtc_dtls::config";

/// `RUST_LOG` (default `info`), with [`NOISY_TARGET`] at `error` unless `RUST_LOG` mentions it.
pub fn filter() -> EnvFilter {
    let asked = std::env::var("RUST_LOG").unwrap_or_default();
    let base = if asked.trim().is_empty() {
        "info"
    } else {
        asked.as_str()
    };
    let directives = if base.contains(NOISY_TARGET) {
        base.to_owned()
    } else {
        format!("{base},{NOISY_TARGET}=error")
    };
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}
