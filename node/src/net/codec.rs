//! The wire format of node-to-node requests and answers on a stream.
//!
//! ```text
//! frame = len(u32 LE) kind(u8) id(u64 LE) head_len(u32 LE) head payload
//! len   = 13 + head_len + payload length (everything after `len`)
//! kind  = 1 request, 2 answer, 3 greeting (the opener's first frame,
//!         echoed by the peer once it serves the stream)
//! head  = postcard of the message without its bulk bytes
//! ```
//!
//! The bulk bytes of a message (a shard file, a Raft payload) travel as the
//! raw payload after the head: written straight from the buffers that hold
//! them and read into one allocation, never through a serializer. Many
//! requests share a stream; the id pairs each answer with its request.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use raft_meta::network::RaftRpcKind;
use serde::{Deserialize, Serialize};

use super::{NetRequest, NetResponse, WireCode, MAX_MESSAGE_BYTES};
use crate::block::shard::ShardMeta;
use cluster_config::BlockId;

pub const KIND_REQUEST: u8 = 1;
pub const KIND_ANSWER: u8 = 2;
pub const KIND_HELLO: u8 = 3;
/// Bytes of the frame prefix after `len`: kind, id, head length.
const PREFIX_AFTER_LEN: usize = 1 + 8 + 4;
/// Heads are small; a bigger one is a protocol error.
const MAX_HEAD_BYTES: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
enum RequestHead {
    Raft { kind: RaftRpcKind },
    PutShard { meta: ShardMeta },
    GetShard { meta: ShardMeta },
    HasShards { metas: Vec<ShardMeta> },
    DeleteShard { block: BlockId, index: u8 },
}

#[derive(Debug, Serialize, Deserialize)]
enum AnswerHead {
    Raft,
    Done,
    Shard { present: bool },
    Has(Vec<bool>),
    Error { code: WireCode, message: String },
}

/// A frame as read: what it is, which request it belongs to, its parts.
pub struct Frame {
    pub kind: u8,
    pub id: u64,
    head: Vec<u8>,
    payload: Vec<u8>,
}

fn bad(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

fn head_bytes<T: Serialize>(head: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(head).map_err(|e| bad(e.to_string()))
}

/// A request as head bytes and bulk payload.
pub fn encode_request(req: NetRequest) -> io::Result<(Vec<u8>, Bytes)> {
    let (head, payload) = match req {
        NetRequest::Raft { kind, payload } => (RequestHead::Raft { kind }, payload),
        NetRequest::PutShard { meta, file } => (RequestHead::PutShard { meta }, file),
        NetRequest::GetShard { meta } => (RequestHead::GetShard { meta }, Bytes::new()),
        NetRequest::HasShards { metas } => (RequestHead::HasShards { metas }, Bytes::new()),
        NetRequest::DeleteShard { block, index } => {
            (RequestHead::DeleteShard { block, index }, Bytes::new())
        }
    };
    Ok((head_bytes(&head)?, payload))
}

pub fn encode_answer(resp: NetResponse) -> io::Result<(Vec<u8>, Bytes)> {
    let (head, payload) = match resp {
        NetResponse::Raft(p) => (AnswerHead::Raft, p),
        NetResponse::Done => (AnswerHead::Done, Bytes::new()),
        NetResponse::Shard(Some(file)) => (AnswerHead::Shard { present: true }, file),
        NetResponse::Shard(None) => (AnswerHead::Shard { present: false }, Bytes::new()),
        NetResponse::Has(v) => (AnswerHead::Has(v), Bytes::new()),
        NetResponse::Error { code, message } => (AnswerHead::Error { code, message }, Bytes::new()),
    };
    Ok((head_bytes(&head)?, payload))
}

impl Frame {
    pub fn into_request(self) -> io::Result<NetRequest> {
        let head: RequestHead =
            postcard::from_bytes(&self.head).map_err(|e| bad(format!("request head: {e}")))?;
        let payload = Bytes::from(self.payload);
        let no_payload = |req: NetRequest| {
            if payload.is_empty() {
                Ok(req)
            } else {
                Err(bad("unexpected payload"))
            }
        };
        match head {
            RequestHead::Raft { kind } => Ok(NetRequest::Raft { kind, payload }),
            RequestHead::PutShard { meta } => Ok(NetRequest::PutShard {
                meta,
                file: payload,
            }),
            RequestHead::GetShard { meta } => no_payload(NetRequest::GetShard { meta }),
            RequestHead::HasShards { metas } => no_payload(NetRequest::HasShards { metas }),
            RequestHead::DeleteShard { block, index } => {
                no_payload(NetRequest::DeleteShard { block, index })
            }
        }
    }

    pub fn into_answer(self) -> io::Result<NetResponse> {
        let head: AnswerHead =
            postcard::from_bytes(&self.head).map_err(|e| bad(format!("answer head: {e}")))?;
        let payload = Bytes::from(self.payload);
        Ok(match head {
            AnswerHead::Raft => NetResponse::Raft(payload),
            AnswerHead::Done => NetResponse::Done,
            AnswerHead::Shard { present: true } => NetResponse::Shard(Some(payload)),
            AnswerHead::Shard { present: false } => NetResponse::Shard(None),
            AnswerHead::Has(v) => NetResponse::Has(v),
            AnswerHead::Error { code, message } => NetResponse::Error { code, message },
        })
    }
}

/// Writes one frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    id: u64,
    head: &[u8],
    payload: &[u8],
) -> io::Result<()> {
    let len = PREFIX_AFTER_LEN + head.len() + payload.len();
    if len > MAX_MESSAGE_BYTES || head.len() > MAX_HEAD_BYTES {
        return Err(bad(format!("message of {len} bytes is too large")));
    }
    let mut prefix = Vec::with_capacity(4 + PREFIX_AFTER_LEN + head.len());
    prefix.extend_from_slice(&(len as u32).to_le_bytes());
    prefix.push(kind);
    prefix.extend_from_slice(&id.to_le_bytes());
    prefix.extend_from_slice(&(head.len() as u32).to_le_bytes());
    prefix.extend_from_slice(head);
    if payload.len() <= 4096 {
        // Small messages go out as one write.
        prefix.extend_from_slice(payload);
        w.write_all(&prefix).await?;
    } else {
        w.write_all(&prefix).await?;
        w.write_all(payload).await?;
    }
    w.flush().await
}

/// Reads one frame; sizes are checked before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Frame> {
    let mut fixed = [0u8; 4 + PREFIX_AFTER_LEN];
    r.read_exact(&mut fixed).await?;
    let len = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]) as usize;
    let kind = fixed[4];
    let mut id = [0u8; 8];
    id.copy_from_slice(&fixed[5..13]);
    let head_len = u32::from_le_bytes([fixed[13], fixed[14], fixed[15], fixed[16]]) as usize;
    if !(PREFIX_AFTER_LEN..=MAX_MESSAGE_BYTES).contains(&len) {
        return Err(bad(format!("frame length {len} out of bounds")));
    }
    if head_len > MAX_HEAD_BYTES || head_len > len - PREFIX_AFTER_LEN {
        return Err(bad(format!("head length {head_len} out of bounds")));
    }
    if !matches!(kind, KIND_REQUEST | KIND_ANSWER | KIND_HELLO) {
        return Err(bad(format!("unknown frame kind {kind}")));
    }
    let mut head = vec![0u8; head_len];
    r.read_exact(&mut head).await?;
    let mut payload = vec![0u8; len - PREFIX_AFTER_LEN - head_len];
    r.read_exact(&mut payload).await?;
    Ok(Frame {
        kind,
        id: u64::from_le_bytes(id),
        head,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ShardMeta {
        ShardMeta {
            block: BlockId([3; 32]),
            codec: 1,
            data: 2,
            parity: 1,
            index: 1,
            sealed_len: 10,
        }
    }

    #[tokio::test]
    async fn requests_and_answers_round_trip_and_bad_frames_are_refused() {
        let big = Bytes::from(vec![9u8; 100_000]);
        let reqs = vec![
            NetRequest::PutShard {
                meta: meta(),
                file: big.clone(),
            },
            NetRequest::Raft {
                kind: RaftRpcKind::Vote,
                payload: Bytes::from_static(b"vote"),
            },
            NetRequest::HasShards {
                metas: vec![meta(); 3],
            },
        ];
        let mut wire = Vec::new();
        for (i, r) in reqs.into_iter().enumerate() {
            let (head, payload) = encode_request(r).unwrap();
            write_frame(&mut wire, KIND_REQUEST, i as u64, &head, &payload)
                .await
                .unwrap();
        }
        let (head, payload) = encode_answer(NetResponse::Shard(Some(big.clone()))).unwrap();
        write_frame(&mut wire, KIND_ANSWER, 7, &head, &payload)
            .await
            .unwrap();
        let mut r = futures::io::Cursor::new(wire.clone());
        let f = read_frame(&mut r).await.unwrap();
        assert_eq!((f.kind, f.id), (KIND_REQUEST, 0));
        match f.into_request().unwrap() {
            NetRequest::PutShard { meta: m, file } => {
                assert_eq!(m, meta());
                assert_eq!(file, big);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_frame(&mut r).await.unwrap().into_request().unwrap(),
            NetRequest::Raft { kind: RaftRpcKind::Vote, payload } if &payload[..] == b"vote"
        ));
        assert!(matches!(
            read_frame(&mut r).await.unwrap().into_request().unwrap(),
            NetRequest::HasShards { metas } if metas.len() == 3
        ));
        let f = read_frame(&mut r).await.unwrap();
        assert_eq!((f.kind, f.id), (KIND_ANSWER, 7));
        assert!(matches!(f.into_answer().unwrap(), NetResponse::Shard(Some(b)) if b == big));

        // A length past the limit is refused before anything is allocated.
        let mut huge = wire.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_frame(&mut futures::io::Cursor::new(huge))
            .await
            .is_err());
        // A truncated frame is an error, not a short message.
        for cut in [3, 20, 1000, 99_000] {
            let mut r = futures::io::Cursor::new(wire[..cut].to_vec());
            assert!(read_frame(&mut r).await.is_err(), "cut at {cut}");
        }
        // A head that does not parse is refused.
        let mut junk = Vec::new();
        write_frame(&mut junk, KIND_REQUEST, 1, &[0xff, 0xff, 0xff], &[])
            .await
            .unwrap();
        let f = read_frame(&mut futures::io::Cursor::new(junk))
            .await
            .unwrap();
        assert!(f.into_request().is_err());
    }
}
