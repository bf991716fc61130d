//! Length-prefixed postcard framing for the request-response protocol.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response;
use libp2p::StreamProtocol;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{NetRequest, NetResponse, MAX_MESSAGE_BYTES};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/strata/rpc/1");

#[derive(Debug, Clone, Default)]
pub struct Codec;

async fn read_frame<T: AsyncRead + Unpin + Send, M: DeserializeOwned>(io: &mut T) -> io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    postcard::from_bytes(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T: AsyncWrite + Unpin + Send, M: Serialize>(
    io: &mut T,
    msg: &M,
) -> io::Result<()> {
    let buf =
        postcard::to_stdvec(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    io.write_all(&(buf.len() as u32).to_le_bytes()).await?;
    io.write_all(&buf).await?;
    io.flush().await
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = NetRequest;
    type Response = NetResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<NetRequest> {
        read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<NetResponse> {
        read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: NetRequest,
    ) -> io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: NetResponse,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}
