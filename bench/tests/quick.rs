//! The harness in quick mode, as the test suite runs it: every scenario at tiny sizes against the real gateway
//! process, real cameras and (when installed) Janus, so the harness can't rot. Measures nothing worth keeping;
//! checks that each scenario produced its rows with figures in them. Then a 20 s slice of the soak (which is not
//! part of the default run): the camera flaps, viewers churn and seek, and nothing may fail.

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
    soak_slice();
}

/// `--only soak --soak-secs 20 --quick`: run after the other scenarios (not beside them: both pin the gateway).
fn soak_slice() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway-bench"))
        .args(["--quick", "--only", "soak", "--soak-secs", "20"])
        .env("RUST_LOG", "error")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| Soak |"))
        .collect();
    assert_eq!(rows.len(), 5, "{stdout}");
    // Growth can't be judged in 20 s; the rest is judged and must hold.
    let judged: Vec<&&str> = rows
        .iter()
        .filter(|r| r.contains("| yes |") || r.contains("**no**"))
        .collect();
    assert_eq!(judged.len(), 3, "{stdout}");
    assert!(
        judged.iter().all(|r| r.contains("| yes |")),
        "{stdout}\n{stderr}"
    );
    assert!(rows.iter().any(|r| r.contains("0 panics")), "{stdout}");
}
