//! The one table the harness prints: a row per scenario and size, the gateway's figure next to the reference
//! measured in the same run, their ratio, the target and whether it is met.

use std::fmt::Write;

/// Whether a row meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Context only, or the reference could not be measured here.
    None,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub scenario: &'static str,
    pub size: String,
    pub gateway: String,
    pub reference: String,
    pub ratio: Option<f64>,
    pub target: String,
    pub verdict: Verdict,
    pub note: String,
}

impl Row {
    pub fn new(scenario: &'static str, size: impl Into<String>) -> Row {
        Row {
            scenario,
            size: size.into(),
            gateway: String::new(),
            reference: String::new(),
            ratio: None,
            target: String::new(),
            verdict: Verdict::None,
            note: String::new(),
        }
    }

    /// Sets the target and judges `ok`.
    pub fn target(mut self, target: impl Into<String>, ok: bool) -> Row {
        self.target = target.into();
        self.verdict = if ok { Verdict::Met } else { Verdict::Missed };
        self
    }
}

/// The rows as a Markdown table (what BENCHMARKS.md keeps).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | size | gateway | reference (same run) | ratio | target | met | notes |\n\
         |---|---|---|---|---:|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.size,
            r.gateway,
            r.reference,
            r.ratio.map_or(String::new(), |x| format!("{x:.2}")),
            r.target,
            match r.verdict {
                Verdict::Met => "yes",
                Verdict::Missed => "**no**",
                Verdict::None => "",
            },
            r.note
        );
    }
    out
}

/// The value at quantile `q` (0..=1) of `v` (sorted here), or NaN when empty.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_table() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 1.0), 5.0);
        assert!(quantile(&mut [], 0.5).is_nan());
        let t = table(&[Row::new("x", "N=1").target("<1", false)]);
        assert!(t.lines().nth(2).unwrap().contains("| x | N=1 |"), "{t}");
        assert!(t.contains("**no**"));
    }
}
