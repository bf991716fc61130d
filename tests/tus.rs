//! Resumable uploads: the tus 1.0 protocol at the wire, the Content-Range /
//! 308 dialect, and a real third-party tus client (tuspy).

mod common;

use base64::Engine;
use common::*;
use reqwest::Method;
use sha1::Digest;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_protocol_at_the_wire() {
    let drive = Drive::start();
    let c = drive.user("tess").await;
    let data = noise(5_500_000, 11);

    // Discovery needs no account.
    let r = drive
        .client()
        .request(Method::OPTIONS, "/api/v1/uploads")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    let ext = r.headers()["tus-extension"].to_str().unwrap().to_string();
    for e in ["creation", "termination", "checksum", "expiration"] {
        assert!(ext.contains(e), "{ext}");
    }
    assert_eq!(
        r.headers()["tus-max-size"],
        (10u64 << 30).to_string().as_str()
    );
    assert!(r.headers()["tus-checksum-algorithm"]
        .to_str()
        .unwrap()
        .contains("sha1"));

    // Creation, the tus way.
    let create = |len: u64, meta: &str| {
        c.request(Method::POST, "/api/v1/uploads")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len)
            .header("upload-metadata", meta.to_string())
            .send()
    };
    let meta = format!("path {},kind {}", b64(b"/tus/file.bin"), b64(b"test"));
    let r = create(data.len() as u64, &meta).await.unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("upload-expires"));
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/api/v1/uploads/"));
    // Version mismatch and missing length.
    let r = c
        .request(Method::POST, "/api/v1/uploads")
        .header("tus-resumable", "0.2.2")
        .header("upload-length", 5)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    let r = c
        .request(Method::POST, "/api/v1/uploads")
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", meta.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let head = |loc: String| {
        let c = c.clone();
        async move {
            c.request(Method::HEAD, &loc)
                .header("tus-resumable", "1.0.0")
                .send()
                .await
                .unwrap()
        }
    };
    let patch = |loc: String, offset: u64, body: Vec<u8>, checksum: Option<String>| {
        let c = c.clone();
        async move {
            let mut rb = c
                .request(Method::PATCH, &loc)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", offset)
                .header("content-type", "application/offset+octet-stream")
                .body(body);
            if let Some(s) = checksum {
                rb = rb.header("upload-checksum", s);
            }
            rb.send().await.unwrap()
        }
    };
    let r = head(loc.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["upload-offset"], "0");
    assert_eq!(
        r.headers()["upload-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(r.headers()["upload-metadata"].to_str().unwrap(), meta);
    assert_eq!(r.headers()["cache-control"], "no-store");

    // First piece with a good sha1 checksum.
    let p1 = &data[..1_000_000];
    let sum = format!("sha1 {}", b64(&sha1::Sha1::digest(p1)));
    let r = patch(loc.clone(), 0, p1.to_vec(), Some(sum)).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "1000000");
    // A bad checksum: 460, the bytes are discarded.
    let p2 = &data[1_000_000..3_000_000];
    let r = patch(
        loc.clone(),
        1_000_000,
        p2.to_vec(),
        Some(format!("blake3 {}", b64(&[0u8; 32]))),
    )
    .await;
    assert_eq!(r.status(), 460);
    assert_eq!(
        head(loc.clone()).await.headers()["upload-offset"],
        "1000000"
    );
    let r = patch(loc.clone(), 1_000_000, p2.to_vec(), Some("md5 AAAA".into())).await;
    assert_eq!(r.status(), 400);
    // Wrong offset: 409 and nothing changes.
    let r = patch(loc.clone(), 999, p2.to_vec(), None).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["upload-offset"], "1000000");
    // Wrong content type: 415.
    let r = c
        .request(Method::PATCH, &loc)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", 1_000_000)
        .header("content-type", "text/plain")
        .body(p2.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // The rest, with a blake3 checksum; the final answer names the version.
    let r = patch(
        loc.clone(),
        1_000_000,
        p2.to_vec(),
        Some(format!("blake3 {}", b64(blake3::hash(p2).as_bytes()))),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        head(loc.clone()).await.headers()["upload-offset"],
        "3000000"
    );
    // Not yet visible.
    assert_eq!(status_of(c.download("/tus/file.bin").await), 404);
    // Past the end: refused.
    let r = patch(
        loc.clone(),
        3_000_000,
        vec![0u8; data.len() - 3_000_000 + 1],
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = patch(loc.clone(), 3_000_000, data[3_000_000..].to_vec(), None).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["upload-offset"],
        data.len().to_string().as_str()
    );
    assert_eq!(r.headers()["strata-version"], "1");
    assert_eq!(
        r.headers()["strata-content-hash"].to_str().unwrap(),
        blake3::hash(&data).to_hex().as_str()
    );
    assert_eq!(c.download("/tus/file.bin").await.unwrap(), data);
    // HEAD after the end still answers, for a client that missed the reply.
    let r = head(loc.clone()).await;
    assert_eq!(
        r.headers()["upload-offset"],
        data.len().to_string().as_str()
    );

    // Termination.
    let r = create(10, &format!("filename {}", b64(b"gone.bin")))
        .await
        .unwrap();
    let loc2 = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .request(Method::DELETE, &loc2)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(head(loc2.clone()).await.status(), 404);
    assert_eq!(patch(loc2, 0, vec![1; 10], None).await.status(), 404);
    assert_eq!(head("/api/v1/uploads/nonsense".into()).await.status(), 404);

    // A zero-length upload is complete when created.
    let r = create(0, &format!("filename {}", b64(b"empty.txt")))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(c.download("/empty.txt").await.unwrap(), Vec::<u8>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_range_dialect_with_308() {
    let drive = Drive::start();
    let c = drive.user("gina").await;
    let data = noise(1_500_000, 12);
    let n = data.len() as u64;
    let loc = c.start_resumable("/g/video.mp4", n).await.unwrap();
    let put = |range: String, body: Vec<u8>| {
        let c = c.clone();
        let loc = loc.clone();
        async move {
            c.request(Method::PUT, &loc)
                .header("content-range", range)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // Status query before any byte: 308 without Range.
    let r = put(format!("bytes */{n}"), vec![]).await;
    assert_eq!(r.status(), 308);
    assert!(!r.headers().contains_key("range"));
    assert!(!r.headers().contains_key("location"));
    let r = put(format!("bytes 0-524287/{n}"), data[..524_288].to_vec()).await;
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["range"], "bytes=0-524287");
    // A resent overlapping range only adds the new bytes.
    let r = put(
        format!("bytes 262144-786431/{n}"),
        data[262_144..786_432].to_vec(),
    )
    .await;
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["range"], "bytes=0-786431");
    // A gap is not accepted: the answer says where to resume.
    let r = put(
        format!("bytes 900000-999999/{n}"),
        data[900_000..1_000_000].to_vec(),
    )
    .await;
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["range"], "bytes=0-786431");
    let r = put(format!("bytes 0-9/{}", n + 1), vec![0; 10]).await;
    assert_eq!(r.status(), 400);
    let r = put(
        format!("bytes 786432-{}/{n}", n - 1),
        data[786_432..].to_vec(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let meta: strata_api::FileMetadata = r.json().await.unwrap();
    assert_eq!(meta.size, n);
    assert_eq!(meta.content_hash, blake3::hash(&data).to_hex().to_string());
    assert_eq!(c.download("/g/video.mp4").await.unwrap(), data);
    // Asking again after completion gives the file, not an error.
    let r = put(format!("bytes */{n}"), vec![]).await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_is_interrupted_and_resumes() {
    assert!(
        python_has("tusclient"),
        "the tus client tuspy is not installed: `python3 -m pip install tuspy` (.ci/run installs it)"
    );
    let drive = Drive::start();
    let c = drive.user("tuspy").await;
    let src = drive.dir.path().join("source.bin");
    let data = noise(7 * (1 << 20) + 12_345, 21);
    std::fs::write(&src, &data).unwrap();
    let ca = drive.data().join("tls").join("cert.pem");
    let out = std::process::Command::new("python3")
        .arg(repo_path("tests/tus/tus_resume.py"))
        .arg(&drive.url)
        .arg(c.token().unwrap())
        .arg(&ca)
        .arg(&src)
        .arg("/from-tuspy/source.bin")
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tuspy script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| -> Vec<u64> {
        stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect()
    };
    assert_eq!(field("after_chunks"), vec![3 << 20]);
    // The dropped request's 700 KiB were kept.
    assert_eq!(field("resumed_at"), vec![(3 << 20) + 700 * 1024]);
    assert_eq!(field("final"), vec![data.len() as u64, data.len() as u64]);
    assert_eq!(c.download("/from-tuspy/source.bin").await.unwrap(), data);
}
