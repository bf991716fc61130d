//! The run's report, for people and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// An invariant the run found broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: String,
    pub detail: String,
    pub seed: u64,
    /// The workload or fault step it was found at (0: the final checks).
    pub step: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub seed: u64,
    pub nodes: u64,
    pub erasure: String,
    pub seconds: u64,
    /// Whether network faults could be injected (root, a private network
    /// namespace, nftables and tc).
    pub network: bool,
    /// Writes the drive acknowledged (or that a read showed applied).
    pub acknowledged_ops: u64,
    /// Every operation tried, reads included.
    pub ops: u64,
    /// Writes refused with a 4xx (load limits under faults).
    pub refused_ops: u64,
    /// Writes whose answer never came; each was settled by reading.
    pub unanswered_ops: u64,
    /// Reads compared byte for byte during the run.
    pub reads_checked: u64,
    /// Downloads whose answer began (a `200` and its headers) and whose
    /// body then broke off: no wrong byte was served, but the reader saw
    /// a failed download.
    pub reads_cut_short: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Faults the schedule held but the harness did not inject (a node
    /// already down, too many down at once, no leader to kill).
    pub faults_skipped: BTreeMap<String, u64>,
    /// Checks made, by invariant.
    pub checks: BTreeMap<String, u64>,
    pub violations: Vec<Violation>,
    /// Where the nodes' logs and data are, when kept.
    pub kept: Option<String>,
}

impl Report {
    pub fn check(&mut self, invariant: &str, n: u64) {
        *self.checks.entry(invariant.to_string()).or_default() += n;
    }

    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The report as a person reads it.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chaos run: seed {}, {} nodes, {}, {} s",
            self.seed, self.nodes, self.erasure, self.seconds
        );
        let _ = writeln!(
            s,
            "operations: {} tried, {} acknowledged, {} refused, {} unanswered (settled by reading), {} reads compared, {} downloads cut short",
            self.ops,
            self.acknowledged_ops,
            self.refused_ops,
            self.unanswered_ops,
            self.reads_checked,
            self.reads_cut_short
        );
        let _ = writeln!(s, "faults: {}", counts(&self.faults));
        if !self.faults_skipped.is_empty() {
            let _ = writeln!(s, "skipped: {}", counts(&self.faults_skipped));
        }
        let _ = writeln!(s, "checks: {}", counts(&self.checks));
        if self.violations.is_empty() {
            let _ = writeln!(s, "violations: none");
        } else {
            let _ = writeln!(s, "violations: {}", self.violations.len());
            for v in self.violations.iter().take(50) {
                let _ = writeln!(s, "  [{}] step {}: {}", v.invariant, v.step, v.detail);
            }
        }
        if let Some(k) = &self.kept {
            let _ = writeln!(s, "cluster kept in {k}");
        }
        s
    }
}

/// `a 1, b 2`.
pub(crate) fn counts(map: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}
