//! The result of a `client.py` run and the checks made on it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

/// What `client.py` printed: how many requests got a 200, how many did
/// not, which real server answered each 200, and the first few errors.
#[derive(Debug, Clone, Deserialize)]
pub struct ClientResult {
    /// Requests answered with status 200.
    pub ok: u64,
    /// Requests that failed (connect/read error, timeout, other status, or
    /// not sent before the run's deadline).
    pub failed: u64,
    /// Answering server name (the body) -> number of 200 answers.
    pub by_server: BTreeMap<String, u64>,
    /// The first few error strings.
    pub errors: Vec<String>,
    /// Wall time of the run, seconds.
    #[serde(default)]
    pub elapsed_s: f64,
}

impl ClientResult {
    /// Parses `client.py`'s JSON output.
    pub fn parse(stdout: &[u8]) -> Result<ClientResult> {
        serde_json::from_slice(stdout).with_context(|| {
            format!(
                "client.py printed no result JSON: {}",
                String::from_utf8_lossy(stdout)
            )
        })
    }

    /// The share of the successful requests that `server` answered.
    pub fn share(&self, server: &str) -> f64 {
        if self.ok == 0 {
            return 0.0;
        }
        self.by_server.get(server).copied().unwrap_or(0) as f64 / self.ok as f64
    }

    /// Per server: (name, answered, share, expected share), for `weights`
    /// given as (server name, weight).
    pub fn split(&self, weights: &[(&str, u32)]) -> Vec<(String, u64, f64, f64)> {
        let total_weight: u32 = weights.iter().map(|&(_, w)| w).sum();
        weights
            .iter()
            .map(|&(name, weight)| {
                let expected = if total_weight == 0 {
                    0.0
                } else {
                    f64::from(weight) / f64::from(total_weight)
                };
                let answered = self.by_server.get(name).copied().unwrap_or(0);
                (name.to_owned(), answered, self.share(name), expected)
            })
            .collect()
    }

    /// A table of the split with a bar per server, e.g.
    /// `rs2  weight 2  201 (33.5%, expected 33.3%)  ###########`.
    pub fn split_report(&self, weights: &[(&str, u32)]) -> String {
        let mut out = String::new();
        for ((name, answered, share, expected), &(_, weight)) in
            self.split(weights).iter().zip(weights)
        {
            let bar = "#".repeat((share * 60.0).round() as usize);
            let _ = writeln!(
                out,
                "{name:<4} weight {weight:<2} {answered:>5} ({:>5.1}%, expected {:>5.1}%)  {bar}",
                share * 100.0,
                expected * 100.0
            );
        }
        let others: u64 = self
            .by_server
            .iter()
            .filter(|(name, _)| !weights.iter().any(|&(w, _)| w == name.as_str()))
            .map(|(_, n)| n)
            .sum();
        if others > 0 {
            let _ = writeln!(out, "other answers: {others}");
        }
        let _ = writeln!(
            out,
            "ok {}, failed {}, {:.1} s",
            self.ok, self.failed, self.elapsed_s
        );
        for error in &self.errors {
            let _ = writeln!(out, "  error: {error}");
        }
        out
    }

    /// Fails unless every one of `expected_requests` requests succeeded.
    pub fn check_all_ok(&self, expected_requests: u64) -> Result<()> {
        ensure!(
            self.ok == expected_requests && self.failed == 0,
            "{} of {expected_requests} requests succeeded, {} failed; errors: {:?}",
            self.ok,
            self.failed,
            self.errors
        );
        Ok(())
    }

    /// Fails unless each server's share is within `tolerance` (relative:
    /// |share - expected| <= tolerance * expected) of its weight's share.
    pub fn check_weights(&self, weights: &[(&str, u32)], tolerance: f64) -> Result<()> {
        for (name, _, share, expected) in self.split(weights) {
            ensure!(
                (share - expected).abs() <= tolerance * expected,
                "{name} got {:.1}% of the requests, expected {:.1}% +- {:.0}% of it:\n{}",
                share * 100.0,
                expected * 100.0,
                tolerance * 100.0,
                self.split_report(weights)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEIGHTS: [(&str, u32); 3] = [("rs1", 1), ("rs2", 2), ("rs3", 3)];

    fn result(rs1: u64, rs2: u64, rs3: u64) -> ClientResult {
        let json = format!(
            r#"{{"ok": {}, "failed": 0, "by_server": {{"rs1": {rs1}, "rs2": {rs2}, "rs3": {rs3}}}, "errors": [], "elapsed_s": 1.5}}"#,
            rs1 + rs2 + rs3
        );
        ClientResult::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn exact_split_passes() {
        let r = result(100, 200, 300);
        r.check_all_ok(600).unwrap();
        r.check_weights(&WEIGHTS, 0.1).unwrap();
    }

    #[test]
    fn tolerance_is_relative_to_the_expected_share() {
        // rs1 expected 1/6 = 16.7%; 10% of that is 1.67 points.
        result(109, 200, 291).check_weights(&WEIGHTS, 0.1).unwrap();
        let err = result(120, 200, 280)
            .check_weights(&WEIGHTS, 0.1)
            .unwrap_err();
        assert!(err.to_string().contains("rs1 got 20.0%"), "{err}");
    }

    #[test]
    fn failures_are_reported() {
        let r = ClientResult::parse(
            br#"{"ok": 9, "failed": 1, "by_server": {"rs1": 9}, "errors": ["request 3: TimeoutError: timed out"]}"#,
        )
        .unwrap();
        let err = r.check_all_ok(10).unwrap_err().to_string();
        assert!(
            err.contains("9 of 10") && err.contains("TimeoutError"),
            "{err}"
        );
    }

    #[test]
    fn report_has_a_bar_per_server() {
        let report = result(100, 200, 300).split_report(&WEIGHTS);
        assert!(
            report.contains("rs3  weight 3    300 ( 50.0%, expected  50.0%)"),
            "{report}"
        );
        assert_eq!(report.lines().next().unwrap().matches('#').count(), 10);
    }
}
