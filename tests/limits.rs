//! One party cannot take a node from the others: connections that say
//! nothing or idle, bodies that trickle, one account's uploads, password
//! guessing, tiny resumable requests, and a burst of oversized metadata.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{retry, Cluster};
use common::*;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client of the drive whose connections come from `from`.
fn client_from(drive: &Drive, from: &str) -> reqwest::Client {
    strata_client::install_crypto_provider();
    let cert = reqwest::Certificate::from_pem(&drive.ca()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn server_addr(drive: &Drive) -> SocketAddr {
    drive.url.trim_start_matches("https://").parse().unwrap()
}

/// A TCP connection to the drive from `from`.
async fn tcp_from(drive: &Drive, from: &str) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(server_addr(drive)).await.unwrap()
}

/// How long until the server closes `s` (reads until EOF or an error).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(start + limit),
            s.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A TLS connection to the drive, offering `alpn`.
async fn tls_from(
    drive: &Drive,
    from: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&drive.ca()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tcp_from(drive, from).await;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

use rustls::pki_types::pem::PemObject;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_crowding_connections_do_not_lock_others_out() {
    let mut drive = Drive::start();
    drive.reconfigure_text(|t| {
        t.replace(
            "[api]\n",
            "[api]\nfirst_byte_timeout = \"1s\"\nidle_timeout = \"2s\"\nmax_connections_per_address = 8\n",
        )
    });
    // One address takes its whole share with connections that say nothing.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tcp_from(&drive, "127.0.0.3").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A ninth from it is turned away at once...
    let mut ninth = tcp_from(&drive, "127.0.0.3").await;
    let shut = closed_within(&mut ninth, Duration::from_millis(900)).await;
    assert!(
        shut.is_some(),
        "a ninth connection from one address was kept"
    );
    // ...while everyone else is served.
    let other = client_from(&drive, "127.0.0.4");
    let r = other
        .get(format!("{}/healthz", drive.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The silent ones are closed after the first-byte time.
    for s in &mut silent {
        let t = closed_within(s, Duration::from_secs(5)).await;
        assert!(t.is_some(), "a silent connection stayed open");
    }
    // Idle after a request, over HTTP/1.1 and over HTTP/2: closed after
    // the idle time, though a request was answered on it first.
    let mut h1 = tls_from(&drive, "127.0.0.5", b"http/1.1").await;
    h1.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    h1.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let t = closed_within(&mut h1, Duration::from_secs(8)).await;
    assert!(t.is_some_and(|t| t >= Duration::from_millis(1500)), "{t:?}");
    let mut h2 = tls_from(&drive, "127.0.0.5", b"h2").await;
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let t = closed_within(&mut h2, Duration::from_secs(8)).await;
    assert!(t.is_some(), "an idle HTTP/2 connection stayed open");
    // The crowded address is served again once its share is free.
    let back = client_from(&drive, "127.0.0.3");
    assert_eq!(
        back.get(format!("{}/healthz", drive.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_and_one_account_holds_only_its_share_of_uploads() {
    let mut drive = Drive::start();
    drive.reconfigure(
        "\n[limits]\nmax_inflight_uploads = 4\nmax_uploads_per_user = 1\nmin_upload_rate = \"1KiB\"\nupload_rate_grace = \"2s\"\n",
    );
    let mallory = drive.user("mallory").await;
    let ann = drive.user("ann").await;
    // One byte every half second, of a body that claims 100 000.
    let trickle = futures::stream::unfold(0u32, |n| async move {
        if n >= 200 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x")),
            n + 1,
        ))
    });
    let started = Instant::now();
    let slow = mallory
        .request(
            Method::POST,
            "/api/v1/files?uploadType=simple&path=/slow.bin",
        )
        .header("content-length", 100_000)
        .body(reqwest::Body::wrap_stream(trickle))
        .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Mallory's share is taken: a second upload is told to wait...
    let r = mallory
        .request(
            Method::POST,
            "/api/v1/files?uploadType=simple&path=/second.bin",
        )
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // ...while another account uploads as usual.
    let data = noise(1_000_000, 4);
    ann.upload("/fine.bin", data.clone()).await.unwrap();
    assert_eq!(ann.download("/fine.bin").await.unwrap(), data);
    // The trickle is cut once it falls below the pace, long before it ends.
    let r = slow.await.unwrap();
    let cut_after = started.elapsed();
    // An error status, or the connection closed under the body.
    if let Ok(r) = r {
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    assert!(cut_after < Duration::from_secs(30), "{cut_after:?}");
    assert_eq!(status_of(mallory.metadata("/slow.bin").await), 404);
    // The slot came back.
    mallory.upload("/after.bin", b"ok".to_vec()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_slowed_without_locking_the_owner_out() {
    let drive = Drive::start();
    drive.user("ann").await;
    let login = |c: reqwest::Client, pw: &'static str| {
        let url = format!("{}/api/v1/auth/login", drive.url);
        async move {
            c.post(url)
                .json(&serde_json::json!({"username": "ann", "password": pw}))
                .send()
                .await
                .unwrap()
        }
    };
    let guesser = client_from(&drive, "127.0.0.7");
    for _ in 0..4 {
        assert_eq!(
            login(guesser.clone(), "wrong guess 123").await.status(),
            401
        );
    }
    // Now the guesser waits, even with the right password.
    let r = login(guesser.clone(), "correct horse battery").await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    // The owner, from elsewhere, logs in.
    let owner = client_from(&drive, "127.0.0.8");
    assert_eq!(
        login(owner.clone(), "correct horse battery").await.status(),
        200
    );
    // A flood of guesses from one address takes a bounded share of the
    // password checks: the owner still gets in meanwhile.
    let flood = client_from(&drive, "127.0.0.9");
    let mut guesses = Vec::new();
    for _ in 0..40 {
        guesses.push(tokio::spawn(login(flood.clone(), "another wrong one")));
    }
    assert_eq!(login(owner, "correct horse battery").await.status(), 200);
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.unwrap().status().as_u16());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    // After the wait, the guesser's address may try again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(login(guesser, "correct horse battery").await.status(), 200);
}

/// Bytes the files under `dir` take on disk.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_bytes(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_tiny_resumable_requests_grow_the_metadata_little() {
    let drive = Drive::start();
    let ann = drive.user("ann").await;
    const N: usize = 3000;
    let data = noise(N, 9);
    let loc = ann.start_resumable("/tiny.bin", N as u64).await.unwrap();
    let meta = drive.data().join("node-1").join("meta");
    let before = disk_bytes(&meta);
    for (i, b) in data.iter().enumerate() {
        let off = ann.upload_chunk(&loc, i as u64, vec![*b]).await.unwrap();
        assert_eq!(off, i as u64 + 1);
    }
    let grown = disk_bytes(&meta) - before;
    // A bounded tail: each request writes a few KiB of metadata, so 3000
    // of them stay within one log segment (64 MiB) and a little state.
    // An unbounded tail re-sends all earlier pieces with every request:
    // 3000 requests would write 160 MB and more.
    assert!(grown < 80 << 20, "metadata grew by {grown} bytes");
    assert_eq!(ann.download("/tiny.bin").await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_metadata_burst_is_refused_and_others_keep_writing() {
    let c = Cluster::start(3, 0, "2+1");
    let admin = c.admin(1).await;
    let term_before = c.status(&admin).await["term"].as_u64().unwrap();
    let mallory = c.user(1, "mallory").await;
    let ann = c.user(2, "ann").await;
    let http1 = {
        strata_client::install_crypto_provider();
        let cert = reqwest::Certificate::from_pem(&c.ca()).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([cert])
            .http1_only()
            .build()
            .unwrap()
    };
    let token = mallory.token().unwrap().to_string();
    // `n` tus creations at once from mallory, spread over the nodes, each
    // with `meta` as its Upload-Metadata; their statuses.
    let burst = |n: usize, meta: String| {
        let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
        let (http, token) = (http1.clone(), token.clone());
        (0..n)
            .map(|i| {
                let (http, token, meta) = (http.clone(), token.clone(), meta.clone());
                let url = urls[i % 3].clone();
                tokio::spawn(async move {
                    http.post(format!("{url}/api/v1/uploads"))
                        .bearer_auth(token)
                        .header("tus-resumable", "1.0.0")
                        .header("upload-length", 10)
                        .header("upload-metadata", meta)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0)
                })
            })
            .collect::<Vec<_>>()
    };
    async fn statuses(tasks: Vec<tokio::task::JoinHandle<u16>>) -> Vec<u16> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
    // 250 creations at once, each with 340 KiB of metadata.
    let junk = format!("path L2EudHh0,junk {}", "QUFB".repeat(340 * 1024 / 4));
    let running = burst(250, junk);
    // Meanwhile another user's writes go through, every one of them.
    for i in 0..30 {
        let path = format!("/ann/{i}");
        retry(|| ann.create_folder(&path)).await;
    }
    let got = statuses(running).await;
    // Every oversized request is refused at the gateway with a 4xx
    // (413, or 431 where the header alone is too large for HTTP).
    assert!(got.iter().all(|s| *s == 413 || *s == 431), "{got:?}");
    // The largest allowed metadata, from one account, many at once: taken
    // or refused by the per-account cap, never a failure of the cluster.
    let running = burst(150, format!("path L2EudHh0,junk {}", "QUFB".repeat(900)));
    for i in 30..60 {
        let path = format!("/ann/{i}");
        retry(|| ann.create_folder(&path)).await;
    }
    let got = statuses(running).await;
    assert!(got.iter().all(|s| *s == 201 || *s == 429), "{got:?}");
    assert!(got.iter().filter(|s| **s == 201).count() >= 90, "{got:?}");
    // No election was forced: the leader and term held.
    let term_after = c.status(&admin).await["term"].as_u64().unwrap();
    assert_eq!(term_before, term_after);
    assert_eq!(ann.list("/ann", false).await.unwrap().entries.len(), 60);
}
