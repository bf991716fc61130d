//! Attacks on a running drive, each reproduced against the real binary:
//! taking the admin account, escalating through the admin API, and the
//! account protections (sessions, passwords, throttled guessing).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{bin, status_of, Drive};
use reqwest::Method;
use serde_json::json;

/// A client that trusts any certificate: an attacker does not need ours.
fn reckless() -> reqwest::Client {
    strata_client::install_crypto_provider();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Signs up as `admin` at every URL from eight clients at once, as fast
/// as answers come, until `stop`; returns every status seen.
fn squat(urls: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (urls, stop) = (urls.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let http = reckless();
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(240);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for url in &urls {
                        let r = http
                            .post(format!("{url}/api/v1/auth/signup"))
                            .json(&json!({"username": "admin", "password": "squatter password 1"}))
                            .send()
                            .await;
                        if let Ok(r) = r {
                            seen.push(r.status().as_u16());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen
            }));
        }
        let mut seen = Vec::new();
        for w in workers {
            seen.extend(w.await.unwrap_or_default());
        }
        seen
    })
}

/// A child process killed (by its own id) when the test ends, however.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn login_status(http: &reqwest::Client, url: &str, user: &str, pw: &str) -> (u16, String) {
    let r = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"username": user, "password": pw}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (
        status,
        body["token"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_becomes_admin_by_signing_up_while_dev_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let stop = Arc::new(AtomicBool::new(false));
    // The squatter is at work before the process exists.
    let attack = squat(vec![url.clone()], stop.clone());
    let mut child = Killed(
        Command::new(bin())
            .args(["dev", "--nodes", "1", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let banner = {
        use std::io::BufRead;
        let out = child.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
                if line.contains("login:") {
                    let _ = tx.send(text.clone());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(120)).expect("banner")
    };
    // Keep trying a while after the drive is up, then look.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = attack.await.unwrap();
    assert!(!seen.is_empty(), "the squatter never got an answer");
    assert!(
        !seen.contains(&201),
        "a sign-up as admin succeeded: {seen:?}"
    );
    // Every answer was "taken": the admin existed before the first request.
    assert!(seen.iter().all(|s| *s == 409), "{seen:?}");
    assert!(banner.contains("login: admin (password in"), "{banner}");
    // The operator's password works, and it is the admin.
    let http = reckless();
    let pw = std::fs::read_to_string(dir.path().join("data").join("admin-password")).unwrap();
    let (status, token) = login_status(&http, &url, "admin", pw.trim()).await;
    assert_eq!(status, 200);
    let users = http
        .get(format!("{url}/api/v1/admin/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(users.status(), 200);
    let users: serde_json::Value = users.json().await.unwrap();
    assert_eq!(users["users"][0]["username"], "admin");
    assert_eq!(users["users"][0]["admin"], true);
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_becomes_admin_by_signing_up_while_a_cluster_starts() {
    let mut c = Cluster::generate(3, 0, "2+1", &[]);
    let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let attack = squat(urls.clone(), stop.clone());
    for i in 1..=3 {
        c.launch(i);
    }
    // Until the operator's password logs in somewhere, and a little after.
    let pw = c.manifest["admin"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    let http = reckless();
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let (status, token) = login_status(&http, &urls[0], "admin", &pw).await;
        if status == 200 {
            break token;
        }
        assert!(Instant::now() < deadline, "admin login: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = attack.await.unwrap();
    assert!(
        !seen.contains(&201),
        "a sign-up as admin succeeded: {seen:?}"
    );
    // Before the drive was set up signups waited (503); after, the name was taken.
    assert!(seen.iter().all(|s| *s == 503 || *s == 409), "{seen:?}");
    assert!(seen.contains(&409), "{seen:?}");
    let r = http
        .get(format!("{}/api/v1/admin/cluster", urls[1]))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rights_come_only_from_an_admin() {
    let c = Cluster::start(3, 1, "2+1");
    let admin = c.admin(1).await;
    let mallory = c.user(2, "mallory").await;
    // The add-node attack: a peer with the attacker's key into the layout.
    let r = mallory
        .request(Method::POST, "/api/v1/admin/nodes")
        .json(&json!({"id": 9, "peer_id": "12D3KooWHMallory", "p2p_addr": "/ip4/127.0.0.9/tcp/1", "api_url": "https://127.0.0.9:1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    for (method, path, body) in [
        (Method::GET, "/api/v1/admin/users", json!(null)),
        (
            Method::PATCH,
            "/api/v1/admin/users/mallory",
            json!({"admin": true}),
        ),
        (Method::GET, "/api/v1/admin/cluster", json!(null)),
        (Method::GET, "/metrics", json!(null)),
    ] {
        let mut rb = mallory.request(method.clone(), path);
        if !body.is_null() {
            rb = rb.json(&body);
        }
        assert_eq!(rb.send().await.unwrap().status(), 403, "{method} {path}");
    }
    // An admin grants it; then it works, and it can be taken back.
    let r = admin
        .request(Method::PATCH, "/api/v1/admin/users/mallory")
        .json(&json!({"admin": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = common::cluster::get_json(&mallory, "/api/v1/admin/users").await;
    let names: Vec<&str> = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"admin") && names.contains(&"mallory"),
        "{r}"
    );
    // The operator's account keeps its rights whoever asks.
    let r = mallory
        .request(Method::PATCH, "/api/v1/admin/users/admin")
        .json(&json!({"admin": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = admin
        .request(Method::PATCH, "/api/v1/admin/users/mallory")
        .json(&json!({"admin": false, "disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Disabled: the session ended (on every node, once each has applied
    // the change) and no new one starts.
    let mut ended = false;
    for _ in 0..50 {
        if let Err(e) = mallory.account().await {
            assert_eq!(e.status(), Some(401));
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "the disabled account's session still works");
    let mut again = c.client(3);
    assert_eq!(
        status_of(again.login("mallory", "correct horse battery", None).await),
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_ended_and_a_new_password_ends_the_others() {
    let drive = Drive::start();
    let laptop = drive.user("ann").await;
    let mut phone = drive.client();
    phone
        .login("ann", "correct horse battery", Some("phone"))
        .await
        .unwrap();
    let list = laptop.sessions().await.unwrap().sessions;
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s.current).count(), 1);
    let phone_id = list
        .iter()
        .find(|s| s.device == "phone")
        .unwrap()
        .id
        .clone();
    laptop.end_session(&phone_id).await.unwrap();
    assert_eq!(status_of(phone.account().await), 401);
    assert_eq!(status_of(laptop.end_session("0000").await), 404);

    phone
        .login("ann", "correct horse battery", Some("phone"))
        .await
        .unwrap();
    // The old password is checked; a weak new one is refused.
    assert_eq!(
        status_of(
            laptop
                .change_password("wrong password!", "a new long passphrase")
                .await
        ),
        403
    );
    assert_eq!(
        status_of(
            laptop
                .change_password("correct horse battery", "password123")
                .await
        ),
        400
    );
    laptop
        .change_password("correct horse battery", "a new long passphrase")
        .await
        .unwrap();
    assert!(laptop.account().await.is_ok());
    assert_eq!(status_of(phone.account().await), 401);
    let mut again = drive.client();
    assert_eq!(
        status_of(again.login("ann", "correct horse battery", None).await),
        401
    );
    again
        .login("ann", "a new long passphrase", None)
        .await
        .unwrap();
}

/// Connects with Python's `ssl` under `VERIFY_X509_STRICT` (and partial
/// chains, as Python 3.13's default context does) and trusting `ca`.
fn strict_tls_handshake(ca: &std::path::Path, url: &str) -> Result<String, String> {
    let hostport = url.trim_start_matches("https://");
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
ctx.verify_flags |= ssl.VERIFY_X509_STRICT | getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname=sys.argv[2]) as t:
        print(t.version())
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(ca)
        .args([host, port])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_pass_strict_verification() {
    let drive = Drive::start();
    let ca = drive.data().join("tls").join("cert.pem");
    let v = strict_tls_handshake(&ca, &drive.url).expect("strata dev's certificate");
    assert!(v.starts_with("TLS"), "{v}");
    let c = Cluster::start(3, 0, "2+1");
    let ca = std::path::PathBuf::from(c.manifest["ca_cert"].as_str().unwrap());
    for i in 1..=3 {
        strict_tls_handshake(&ca, &c.url(i)).unwrap_or_else(|e| panic!("node {i}: {e}"));
    }
    // The check is real: a certificate of another CA fails it.
    let other = tempfile::tempdir().unwrap();
    let (paths, _) =
        cluster_config::generate::ensure_self_signed_tls(other.path(), &["127.0.0.1".to_string()])
            .unwrap();
    assert!(strict_tls_handshake(&paths.ca, &drive.url).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private_to_the_service_user() {
    use std::os::unix::fs::PermissionsExt;
    let mut drive = Drive::start();
    let ann = drive.user("ann").await;
    ann.upload("/a.bin", common::noise(100_000, 1))
        .await
        .unwrap();
    let data = drive.data();
    let walk = |root: &std::path::Path| {
        let mut open = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let m = e.metadata().unwrap();
                let mode = m.permissions().mode() & 0o777;
                if m.is_dir() {
                    if mode != 0o700 {
                        open.push((e.path(), mode));
                    }
                    stack.push(e.path());
                } else if m.is_file() && mode != 0o600 {
                    open.push((e.path(), mode));
                }
            }
        }
        open
    };
    // Everything the drive created: the Raft log with every password hash,
    // the state, the packs, the keys.
    let open = walk(&data);
    assert!(open.is_empty(), "readable by others: {open:?}");
    // Left open by an earlier version: tightened at the next start.
    drive.stop();
    let node = data.join("node-1");
    let mut loosened = Vec::new();
    for sub in ["meta", "disk-0"] {
        let dir = node.join(sub);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.metadata().unwrap().is_file() {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
                loosened.push(e.path());
            }
        }
    }
    assert!(!loosened.is_empty());
    drive.restart();
    for sub in ["meta", "disk-0"] {
        let open = walk(&node.join(sub));
        assert!(open.is_empty(), "still readable by others: {open:?}");
    }
    assert!(ann.download("/a.bin").await.is_ok());
}
