//! HTTP details real clients depend on, over HTTP/1.1 and HTTP/2: HEAD
//! wherever GET works (errors included, never a body), `Allow` on 405,
//! `WWW-Authenticate` on 401, `If-Range`, download headers, tus status
//! codes, and the input checks (names, cursors, presence).

mod common;

use common::*;
use reqwest::{Method, Version};

/// A client of the drive that speaks only HTTP/1.1, or that negotiates
/// HTTP/2 (ALPN), with `token` if given.
fn http(drive: &Drive, h2: bool) -> reqwest::Client {
    strata_client::install_crypto_provider();
    let cert = reqwest::Certificate::from_pem(&drive.ca()).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([cert]);
    if !h2 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_works_wherever_get_does_with_no_body_over_http1_and_http2() {
    let drive = Drive::start();
    let ann = drive.user("ann").await;
    let data = noise(300_000, 3);
    ann.upload("/docs/a.bin", data.clone()).await.unwrap();
    let token = ann.token().unwrap().to_string();
    for h2 in [false, true] {
        let c = http(&drive, h2);
        let want = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let head = |path: &str, auth: bool| {
            let mut rb = c.request(Method::HEAD, format!("{}{path}", drive.url));
            if auth {
                rb = rb.bearer_auth(&token);
            }
            rb.send()
        };
        for (path, auth, status) in [
            ("/healthz", false, 200),
            ("/readyz", false, 200),
            ("/api/openapi.json", false, 200),
            ("/api/v1/files/content?path=/docs/a.bin", true, 200),
            ("/api/v1/files/metadata?path=/docs/a.bin", true, 200),
            ("/api/v1/files/list?path=/docs", true, 200),
            ("/api/v1/account", true, 200),
            ("/api/v1/changes/latest", true, 200),
            ("/api/v1/changes?cursor=0", true, 200),
            ("/api/v1/changes/poll?cursor=0&timeout=1", true, 200),
            ("/api/v1/files/history?path=/docs/a.bin", true, 200),
            ("/api/v1/files/blocks?path=/docs/a.bin", true, 200),
            ("/api/v1/presence", true, 200),
            ("/api/v1/cluster/nodes", true, 200),
            ("/api/v1/shares", true, 200),
            ("/api/v1/account/sessions", true, 200),
            ("/api/v1/admin/cluster", true, 403),
            ("/api/v1/admin/verify", true, 403),
            ("/api/v1/admin/users", true, 403),
            ("/api/v1/blocks/00", true, 400),
            (
                "/api/v1/blocks/0000000000000000000000000000000000000000000000000000000000000000",
                true,
                404,
            ),
            (
                "/api/v1/blocks/0000000000000000000000000000000000000000000000000000000000000000/signature",
                true,
                404,
            ),
            // Errors answer HEAD too, without a body and without a
            // protocol error.
            ("/api/v1/files/content?path=/missing.bin", true, 404),
            ("/api/v1/account", false, 401),
            (
                "/api/v1/uploads/00000000000000000000000000000000",
                true,
                404,
            ),
            ("/no/such/endpoint", false, 404),
            ("/metrics", false, 401),
        ] {
            let r = head(path, auth)
                .await
                .unwrap_or_else(|e| panic!("HEAD {path} over {want:?}: {e}"));
            assert_eq!(r.version(), want);
            assert_eq!(r.status(), status, "HEAD {path} over {want:?}");
            if status == 401 {
                assert!(r.headers()["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Bearer"));
            }
            let content_length = r
                .headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_string());
            let body = r.bytes().await.unwrap();
            assert!(body.is_empty(), "HEAD {path} had a body");
            if path.contains("content?path=/docs/a.bin") {
                assert_eq!(content_length.as_deref(), Some("300000"));
            }
        }
        // 405 says what is allowed; 401 says how to authenticate.
        let r = c
            .post(format!("{}/healthz", drive.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
        let r = c
            .put(format!(
                "{}/api/v1/files/content?path=/docs/a.bin",
                drive.url
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
        let r = c
            .get(format!("{}/api/v1/account", drive.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_never_splices_two_versions_and_downloads_are_not_sniffed() {
    let drive = Drive::start();
    let ann = drive.user("ann").await;
    let one = noise(200_000, 1);
    let two = noise(200_000, 2);
    ann.upload("/Invoice.html", one.clone()).await.unwrap();
    let get = |range: &str, if_range: Option<&str>| {
        let mut rb = ann
            .request(Method::GET, "/api/v1/files/content?path=/Invoice.html")
            .header("range", range);
        if let Some(v) = if_range {
            rb = rb.header("if-range", v);
        }
        rb.send()
    };
    let r = get("bytes=100000-", None).await.unwrap();
    assert_eq!(r.status(), 206);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let modified = r.headers()["last-modified"].to_str().unwrap().to_string();
    // Downloads are attachments of their type, never sniffed or rendered.
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"Invoice.html\""));
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(r.bytes().await.unwrap(), one[100_000..]);
    // The same entity tag: still the range. A date cannot tell two
    // versions of one second apart: the whole body.
    let r = get("bytes=100000-", Some(&etag)).await.unwrap();
    assert_eq!(r.status(), 206);
    let r = get("bytes=100000-", Some(&modified)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), one);
    // A new version: the old validator gets the whole new body, not the
    // rest of it to splice onto the old start.
    ann.upload("/Invoice.html", two.clone()).await.unwrap();
    for validator in [etag.as_str(), modified.as_str(), "W/\"x\""] {
        let r = get("bytes=100000-", Some(validator)).await.unwrap();
        assert_eq!(r.status(), 200, "If-Range {validator}");
        assert!(!r.headers().contains_key("content-range"));
        assert_eq!(r.bytes().await.unwrap(), two);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_code() {
    let drive = Drive::start();
    let ann = drive.user("ann").await;
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        (
            status,
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
        )
    };
    // tus: a missing or unknown Tus-Resumable is 412 precondition_failed.
    for version in [None, Some("0.2.2")] {
        let mut rb = ann
            .request(Method::POST, "/api/v1/uploads")
            .header("upload-length", 10)
            .header("upload-metadata", "filename YS50eHQ=");
        if let Some(v) = version {
            rb = rb.header("tus-resumable", v);
        }
        let (status, c) = code(rb.send().await.unwrap()).await;
        assert_eq!((status, c.as_str()), (412, "precondition_failed"));
    }
    // Names that show as something else are refused.
    for name in [
        "/Invoice\u{202e}lmth.exe",
        "/a\u{200b}b.txt",
        "/\u{feff}x",
        "/d\u{2066}/x",
    ] {
        assert_eq!(
            status_of(ann.upload(name, b"x".to_vec()).await),
            400,
            "{name:?}"
        );
        assert_eq!(status_of(ann.create_folder(name).await), 400, "{name:?}");
    }
    assert_eq!(ann.list("/", false).await.unwrap().entries.len(), 0);
    // A cursor past the journal is the client's mistake, whatever its size.
    for cursor in ["18446744073709551615", "18446744073709551614", "99999"] {
        let r = ann
            .request(
                Method::GET,
                &format!("/api/v1/changes/poll?cursor={cursor}&timeout=1"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (400, "bad_request".to_string()), "{cursor}");
        let r = ann
            .request(Method::GET, &format!("/api/v1/changes?cursor={cursor}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{cursor}");
    }
    // Presence is bounded per user however many paths one posts.
    for i in 0..150 {
        ann.set_presence(&format!("/file-{i}.txt"), true)
            .await
            .unwrap();
    }
    let p = ann
        .request(Method::GET, "/api/v1/presence")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let n = p["devices"].as_array().unwrap().len();
    assert_eq!(n, 64, "{p}");
    // An oversized Upload-Metadata is refused before it is stored.
    let big = format!("path {},junk {}", "L2EudHh0", "QUFB".repeat(2000));
    let r = ann
        .request(Method::POST, "/api/v1/uploads")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 10)
        .header("upload-metadata", big)
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (413, "too_large".to_string()));
}
