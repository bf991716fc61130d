//! The running server against its own OpenAPI document: schemathesis (a
//! real third-party API fuzzer) generates requests from
//! `/api/openapi.json` for every operation, signed in as a user, and
//! checks that no answer is a server error and that every documented
//! answer matches its schema.

mod common;

use common::*;

fn schemathesis_installed() -> bool {
    std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_break() {
    assert!(
        schemathesis_installed(),
        "schemathesis is not installed: `python3 -m pip install schemathesis==3.39.16` (scripts/test installs it)"
    );
    let drive = Drive::start();
    let c = drive.user("fuzz").await;
    // Something to find: a folder and a file.
    c.create_folder("/docs").await.unwrap();
    c.upload("/docs/a.txt", b"hello".to_vec()).await.unwrap();
    let ca = drive.data().join("tls").join("cert.pem");
    let token = c.token().unwrap().to_string();
    let out = std::process::Command::new("schemathesis")
        .arg("run")
        .arg(format!("{}/api/openapi.json", drive.url))
        .args(["--checks", "not_a_server_error"])
        .args(["--checks", "response_schema_conformance"])
        .args(["--hypothesis-max-examples", "30"])
        .args(["--hypothesis-seed", "7"])
        .arg("--hypothesis-derandomize")
        .args(["--workers", "1"])
        // Header values with control or non-ASCII bytes are not HTTP: the
        // HTTP parser answers them with a bare 400 before any handler runs
        // (tests/schema/hooks.py sends only valid ones).
        .args(["--generation-allow-x00", "false"])
        // Signing out would end the session the rest of the run uses.
        .args(["--exclude-path", "/api/v1/auth/logout"])
        .args(["--request-timeout", "20000"])
        .arg("--request-tls-verify")
        .arg(&ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("--no-color")
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", repo_path("tests/schema"))
        .current_dir(drive.dir.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // It really ran the operations (a document it could not load, or no
    // operation at all, is a failure too).
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(!stdout.contains("No operations"), "{stdout}");
}
