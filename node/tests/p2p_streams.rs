//! The libp2p transport on real sockets (127.0.0.1): many concurrent calls
//! with large payloads both ways, calls that give up without breaking the
//! stream for the others, and a peer that restarts.

mod common;
use common::{node, noise};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_config::BlockId;
use strata_node::block::shard::ShardMeta;
use strata_node::net::p2p::P2pNet;
use strata_node::net::{
    BoxFuture, InboundHandler, NetError, NetRequest, NetResponse, PeerAddr, PeerNet,
};
use tokio_util::sync::CancellationToken;

/// Answers a put with the payload's BLAKE3 as a shard; a get with index 9
/// only after a long sleep.
struct Echo {
    served: AtomicU64,
}

impl InboundHandler for Echo {
    fn handle(&self, _from: cluster_config::NodeId, req: NetRequest) -> BoxFuture<NetResponse> {
        self.served.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            match req {
                NetRequest::PutShard { file, .. } => {
                    NetResponse::Shard(Some(Bytes::copy_from_slice(blake3::hash(&file).as_bytes())))
                }
                NetRequest::GetShard { meta } if meta.index == 9 => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    NetResponse::Done
                }
                NetRequest::GetShard { meta } => {
                    NetResponse::Shard(Some(Bytes::from(vec![meta.index; 1 << 20])))
                }
                _ => NetResponse::Done,
            }
        })
    }
}

fn meta(index: u8) -> ShardMeta {
    ShardMeta {
        block: BlockId([index; 32]),
        codec: 1,
        data: 2,
        parity: 1,
        index,
        sealed_len: 0,
    }
}

struct Node {
    net: P2pNet,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    echo: Arc<Echo>,
}

fn start(id: u64, key: &libp2p::identity::Keypair, peers: &[PeerAddr]) -> Node {
    let stop = CancellationToken::new();
    let echo = Arc::new(Echo {
        served: AtomicU64::new(0),
    });
    let (net, task) = P2pNet::start(
        node(id),
        key.clone(),
        [5; 32],
        &peers[id as usize - 1].p2p_addr,
        peers.to_vec(),
        echo.clone(),
        stop.clone(),
    )
    .unwrap();
    Node {
        net,
        stop,
        task,
        echo,
    }
}

async fn until_answered(net: &P2pNet, to: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = net
            .call(
                node(to),
                NetRequest::HasShards { metas: vec![] },
                Duration::from_secs(2),
            )
            .await;
        if matches!(r, Ok(NetResponse::Done)) {
            return;
        }
        assert!(Instant::now() < deadline, "node {to} never answered: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_calls_timeouts_and_a_restart() {
    let keys: Vec<_> = (0..2)
        .map(|_| libp2p::identity::Keypair::generate_ed25519())
        .collect();
    let peers: Vec<PeerAddr> = (1..=2u64)
        .map(|i| PeerAddr {
            id: node(i),
            peer_id: keys[i as usize - 1].public().to_peer_id().to_string(),
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 38300 + i),
        })
        .collect();
    let a = start(1, &keys[0], &peers);
    let mut b = start(2, &keys[1], &peers);
    until_answered(&a.net, 2).await;
    until_answered(&b.net, 1).await;

    // 64 puts of up to 1.5 MiB each way at once, and gets of 1 MiB answers:
    // every answer belongs to its own request.
    let mut calls = Vec::new();
    for i in 0..64u64 {
        for (from, to) in [(&a.net, 2u64), (&b.net, 1u64)] {
            let net = from.clone();
            calls.push(tokio::spawn(async move {
                let data = noise(200_000 + (i as usize % 7) * 200_000, i + to * 1000);
                let want = *blake3::hash(&data).as_bytes();
                let put = net
                    .call(
                        node(to),
                        NetRequest::PutShard {
                            meta: meta(1),
                            file: Bytes::from(data),
                        },
                        Duration::from_secs(30),
                    )
                    .await;
                assert!(
                    matches!(&put, Ok(NetResponse::Shard(Some(h))) if h[..] == want),
                    "put {i} to {to}: {put:?}"
                );
                let index = (i % 5) as u8;
                let get = net
                    .call(
                        node(to),
                        NetRequest::GetShard { meta: meta(index) },
                        Duration::from_secs(30),
                    )
                    .await;
                match get {
                    Ok(NetResponse::Shard(Some(b))) => {
                        assert_eq!(b.len(), 1 << 20);
                        assert!(b.iter().all(|x| *x == index));
                    }
                    other => panic!("get {i}: {other:?}"),
                }
            }));
        }
    }
    for c in calls {
        c.await.unwrap();
    }

    // A call that gives up does not disturb the others on its stream.
    let slow = a
        .net
        .call(
            node(2),
            NetRequest::GetShard { meta: meta(9) },
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(slow, Err(NetError::Timeout { .. })), "{slow:?}");
    for i in 0..20u64 {
        let data = noise(300_000, 77 + i);
        let want = *blake3::hash(&data).as_bytes();
        let put = a
            .net
            .call(
                node(2),
                NetRequest::PutShard {
                    meta: meta(1),
                    file: Bytes::from(data),
                },
                Duration::from_secs(10),
            )
            .await;
        assert!(
            matches!(&put, Ok(NetResponse::Shard(Some(h))) if h[..] == want),
            "{put:?}"
        );
    }

    // Node 2 goes away: calls fail fast instead of hanging, and once it is
    // back (same key, same address) they are answered again.
    b.stop.cancel();
    let _ = b.task.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let down = a
        .net
        .call(
            node(2),
            NetRequest::HasShards { metas: vec![] },
            Duration::from_secs(10),
        )
        .await;
    assert!(down.is_err(), "{down:?}");
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "failing took {:?}",
        t.elapsed()
    );
    b = start(2, &keys[1], &peers);
    until_answered(&a.net, 2).await;
    until_answered(&b.net, 1).await;
    assert!(b.echo.served.load(Ordering::Relaxed) > 0);
    a.stop.cancel();
    b.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_connections_does_not_keep_a_peer_out() {
    let keys: Vec<_> = (0..2)
        .map(|_| libp2p::identity::Keypair::generate_ed25519())
        .collect();
    let peers: Vec<PeerAddr> = (1..=2u64)
        .map(|i| PeerAddr {
            id: node(i),
            peer_id: keys[i as usize - 1].public().to_peer_id().to_string(),
            p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 38310 + i),
        })
        .collect();
    let a = start(1, &keys[0], &peers);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 200 connections to node 1 that never finish a handshake: at most
    // 32 are held in negotiation, the rest are dropped at once.
    let mut silent = Vec::new();
    for _ in 0..200 {
        if let Ok(s) = tokio::net::TcpStream::connect("127.0.0.1:38311").await {
            silent.push(s);
        }
    }
    assert!(silent.len() >= 100, "{} connections", silent.len());
    // A listed peer that starts now still reaches node 1 and is answered.
    let b = start(2, &keys[1], &peers);
    until_answered(&b.net, 1).await;
    until_answered(&a.net, 2).await;
    // The silent ones are all gone within the handshake timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 64];
    for s in &mut silent {
        use tokio::io::AsyncReadExt;
        // Read what node 1 sends (the protocol's greeting) until it closes.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => panic!("a silent connection stayed open past the handshake timeout"),
            }
        }
    }
    for n in [a, b] {
        n.stop.cancel();
        let _ = n.task.await;
    }
}
