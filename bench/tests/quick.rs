//! The harness in quick mode, as the test suite runs it: every scenario at tiny sizes against the real gateway
//! process, real cameras and (when installed) Janus, so the harness can't rot. Measures nothing worth keeping;
//! checks that each scenario produced its rows with figures in them.

use std::process::Command;

#[test]
fn every_scenario_runs_in_quick_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway-bench"))
        .arg("--quick")
        .env("RUST_LOG", "error")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    for (scenario, expected) in [
        ("WSC-RTP fan-out", 3),
        ("WebRTC fan-out", 2),
        ("Latency added", 2),
        ("Time to first frame", 2),
        ("Ingest scale", 1),
        ("Live-rewind (DVR)", 6),
        ("Retention pass", 2),
    ] {
        let got: Vec<&&str> = rows
            .iter()
            .filter(|r| r.starts_with(&format!("| {scenario} |")))
            .collect();
        assert_eq!(got.len(), expected, "{scenario}:\n{stdout}");
        for r in got {
            assert!(
                !r.contains("NaN") && r.chars().any(|c| c.is_ascii_digit()),
                "{r}"
            );
        }
    }
    // The WebRTC rows compare against Janus: setup.sh installs it, so it must have been measured.
    assert!(
        rows.iter()
            .filter(|r| r.starts_with("| WebRTC fan-out |"))
            .all(|r| r.contains("| Janus ")),
        "{stdout}"
    );
}
