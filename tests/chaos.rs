//! `strata chaos run` as CI runs it: five real nodes, a fixed seed, every
//! fault kind injected at least once, and the oracle must find nothing.

mod common;

use std::process::Command;

use serde_json::Value;

/// Fault kinds the harness injects; the network ones and `disk_full`
/// need root (private network and mount namespaces, nftables, tc, a
/// small tmpfs), which the report says; `clock_jump` needs libfaketime
/// (installed by scripts/test and .ci/run), `slow_disk` a C compiler to
/// build its shim (the one Rust links with).
const KINDS: [&str; 11] = [
    "kill",
    "kill_leader",
    "pause",
    "partition",
    "loss",
    "latency",
    "bitrot",
    "wiped_disk",
    "disk_full",
    "slow_disk",
    "clock_jump",
];
const NEED_ROOT: [&str; 4] = ["partition", "loss", "latency", "disk_full"];

#[test]
fn a_seeded_chaos_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let out = Command::new(common::bin())
        .args([
            "chaos",
            "run",
            "--nodes",
            "5",
            "--ec",
            "2+1",
            "--seconds",
            "90",
        ])
        .args(["--seed", "3", "--clients", "6", "--max-file-mib", "8"])
        .arg("--dir")
        .arg(dir.path().join("run"))
        .arg("--json")
        .arg(&json)
        .env("RUST_LOG", "warn")
        .output()
        .expect("strata chaos run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(
        report["violations"].as_array().map(Vec::len),
        Some(0),
        "{stdout}\n{stderr}"
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(report["seed"], 3);
    assert!(
        report["acknowledged_ops"].as_u64().unwrap() >= 500,
        "too little work to mean anything: {report}"
    );
    let network = report["network"].as_bool().unwrap();
    for kind in KINDS {
        if NEED_ROOT.contains(&kind) && !network {
            continue;
        }
        assert!(
            report["faults"][kind].as_u64().unwrap_or(0) >= 1,
            "{kind} never injected: {report}"
        );
    }
    for check in [
        "acknowledged_readable",
        "old_versions_readable",
        "history_matches_model",
        "listing_matches_model",
        "deleted_stays_deleted",
        "users_isolated",
        "repair_restores_shards",
        "change_feed_exactly_once",
        "linearizable",
    ] {
        assert!(
            report["checks"][check].as_u64().unwrap_or(0) >= 1,
            "{check} never checked: {report}"
        );
    }
    // The human report says the same.
    assert!(stdout.contains("violations: none"), "{stdout}");
}

/// Runs `strata chaos <verb>` with each set of bad options: every one is
/// refused, with a message, before anything starts.
fn refused(verb: &str, cases: &[&[&str]]) {
    for args in cases {
        let out = Command::new(common::bin())
            .args(["chaos", verb])
            .args(*args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{verb} {args:?} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("bad option")
                || verb == "run" && !out.stderr.is_empty(),
            "{verb} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Bad options are refused before anything starts.
#[test]
fn chaos_options_are_checked() {
    refused(
        "run",
        &[
            &["--nodes", "2"],
            &["--ec", "4+2", "--nodes", "5"],
            &["--ec", "two"],
            &["--faults", "meteor"],
            &["--seconds", "0"],
        ],
    );
}

/// The simulation as CI runs it: 500 seeds of the real node code on the
/// in-memory network and the virtual clock, every fault kind injected,
/// every invariant checked, nothing violated. Every 25th seed runs twice
/// and its replay is compared (reported, see RELIABILITY.md).
#[test]
fn five_hundred_simulated_seeds_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("sim.json");
    let out = Command::new(common::bin())
        .args(["chaos", "sim", "--seed", "1", "--seeds", "500"])
        .args(["--replay-every", "25", "--keep-going"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("strata chaos sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(
        report["violations"].as_array().map(Vec::len),
        Some(0),
        "{}",
        report["violations"]
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(report["seeds"], 500);
    assert!(
        report["acknowledged_ops"].as_u64().unwrap() >= 5_000,
        "too little work to mean anything: {report}"
    );
    for kind in [
        "kill",
        "kill_leader",
        "pause",
        "partition",
        "loss",
        "latency",
        "bitrot",
        "wiped_disk",
        "slow_disk",
        "clock_jump",
        "torn_write",
    ] {
        assert!(
            report["faults"][kind].as_u64().unwrap_or(0) >= 5,
            "{kind} hardly injected: {}",
            report["faults"]
        );
    }
    for check in [
        "acknowledged_readable",
        "history_matches_model",
        "listing_matches_model",
        "replicas_agree",
        "users_isolated",
        "repair_restores_shards",
        "linearizable",
        "refcounts_match",
        "change_feed_exactly_once",
    ] {
        assert!(
            report["checks"][check].as_u64().unwrap_or(0) >= 500,
            "{check} hardly checked: {}",
            report["checks"]
        );
    }
    assert_eq!(report["replays_checked"], 20);
    assert!(stdout.contains("violations: 0"), "{stdout}");
}

/// Bad simulation options are refused before any seed runs.
#[test]
fn simulation_options_are_checked() {
    refused(
        "sim",
        &[
            &["--nodes", "2"],
            &["--ec", "3+2", "--nodes", "4"],
            &["--seeds", "0"],
            &["--ops", "0"],
        ],
    );
}
