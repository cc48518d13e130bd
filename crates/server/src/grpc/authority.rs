//! Accepting gRPC clients that send a whole URL as the HTTP/2 `:authority`.
//!
//! etcd's Go clients dial some calls with the endpoint URL itself as the target, so they send
//! `:authority: http://127.0.0.1:2379` (etcdctl 3.4's `endpoint status`, `hashkv`, `defrag`, `move-leader`
//! and `snapshot save` all do). Go's gRPC server accepts that; the Rust HTTP/2 stack (h2) refuses it as a
//! malformed authority and resets the stream. This wrapper sits between the TCP connection and the HTTP/2
//! server and, when a connection's first request carries such an authority, rewrites the header blocks of
//! that connection (HPACK decoded and re-encoded, with `http://` and `https://` stripped from the
//! authority). A connection whose first request is fine is passed through untouched.

use loona_hpack::{Decoder, Encoder};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::{Connected, TcpConnectInfo};

const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const PREFACE_BYTES: usize = HTTP2_PREFACE.len();
const FRAME_HEADER_BYTES: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The HTTP/2 default SETTINGS_MAX_FRAME_SIZE, which the server keeps.
const MAX_FRAME_BYTES: usize = 16_384;
/// The largest header block collected before it is refused (h2 caps header lists far below this).
const MAX_HEADER_BLOCK_BYTES: usize = 256 * 1024;
/// The HPACK dynamic table size the server advertises (the HTTP/2 default).
const HEADER_TABLE_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Until the first header block is seen.
    Undecided,
    /// The first request was fine: bytes flow through untouched.
    Passthrough,
    /// Every header block is decoded and re-encoded.
    Rewrite,
}

/// A header block split over HEADERS and CONTINUATION frames, being collected.
struct PendingBlock {
    stream_id: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    raw_frames: Vec<u8>,
}

pub struct AuthorityRewrite<S> {
    inner: S,
    mode: Mode,
    preface_left: usize,
    input: Vec<u8>,
    output: Vec<u8>,
    output_position: usize,
    pending: Option<PendingBlock>,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl<S> AuthorityRewrite<S> {
    pub fn new(inner: S) -> Self {
        AuthorityRewrite {
            inner,
            mode: Mode::Undecided,
            preface_left: PREFACE_BYTES,
            input: Vec::new(),
            output: Vec::new(),
            output_position: 0,
            pending: None,
            decoder: {
                let mut decoder = Decoder::new();
                // What the server advertised is all a client may use; refuse anything larger.
                decoder.set_max_allowed_table_size(HEADER_TABLE_BYTES);
                decoder
            },
            encoder: Encoder::new(),
        }
    }

    /// Moves every complete frame from `input` to `output`, rewriting header blocks as needed.
    fn process(&mut self) -> io::Result<()> {
        loop {
            if self.mode == Mode::Passthrough {
                self.output.append(&mut self.input);
                return Ok(());
            }
            if self.preface_left > 0 {
                let take = self.preface_left.min(self.input.len());
                let offset = PREFACE_BYTES - self.preface_left;
                if self.input[..take] != HTTP2_PREFACE[offset..offset + take] {
                    // Not HTTP/2 (an HTTP/1.1 request for /health or /metrics): nothing to rewrite.
                    self.mode = Mode::Passthrough;
                    continue;
                }
                self.output.extend(self.input.drain(..take));
                self.preface_left -= take;
                if self.preface_left > 0 {
                    return Ok(());
                }
                continue;
            }
            if self.input.len() < FRAME_HEADER_BYTES {
                return Ok(());
            }
            let length = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            if length > MAX_FRAME_BYTES {
                return Err(malformed("frame larger than SETTINGS_MAX_FRAME_SIZE"));
            }
            if self.input.len() < FRAME_HEADER_BYTES + length {
                return Ok(());
            }
            let frame: Vec<u8> = self.input.drain(..FRAME_HEADER_BYTES + length).collect();
            self.frame(frame)?;
        }
    }

    fn frame(&mut self, frame: Vec<u8>) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id: [u8; 4] = frame[5..9].try_into().expect("9-byte header");
        let payload = &frame[FRAME_HEADER_BYTES..];
        match kind {
            HEADERS => {
                let mut start = 0;
                let mut end = payload.len();
                if flags & PADDED != 0 {
                    let padding = *payload.first().ok_or_else(|| malformed("empty padded HEADERS"))? as usize;
                    start = 1;
                    end = end.checked_sub(padding).ok_or_else(|| malformed("padding longer than HEADERS"))?;
                }
                let priority = if flags & PRIORITY != 0 {
                    let bytes: [u8; 5] = payload
                        .get(start..start + 5)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| malformed("short HEADERS"))?;
                    start += 5;
                    Some(bytes)
                } else {
                    None
                };
                let fragment = payload.get(start..end).ok_or_else(|| malformed("short HEADERS"))?.to_vec();
                self.pending = Some(PendingBlock {
                    stream_id,
                    end_stream: flags & END_STREAM != 0,
                    priority,
                    fragment,
                    raw_frames: frame.clone(),
                });
                if flags & END_HEADERS != 0 {
                    self.finish_block()?;
                }
            }
            CONTINUATION => {
                let pending = self.pending.as_mut().ok_or_else(|| malformed("CONTINUATION without HEADERS"))?;
                pending.fragment.extend_from_slice(payload);
                pending.raw_frames.extend_from_slice(&frame);
                if pending.raw_frames.len() > MAX_HEADER_BLOCK_BYTES {
                    return Err(malformed("header block too large"));
                }
                if flags & END_HEADERS != 0 {
                    self.finish_block()?;
                }
            }
            _ => self.output.extend_from_slice(&frame),
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let block = self.pending.take().expect("a block is pending");
        let mut headers =
            self.decoder.decode(&block.fragment).map_err(|error| malformed(&format!("HPACK: {error:?}")))?;
        let mut rewritten = false;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority"
                && let Some(stripped) = strip_scheme(value)
            {
                *value = stripped;
                rewritten = true;
            }
        }
        if self.mode == Mode::Undecided {
            if !rewritten {
                // Hand the original bytes on; from now on the connection is not touched.
                self.output.extend_from_slice(&block.raw_frames);
                self.mode = Mode::Passthrough;
                return Ok(());
            }
            tracing::debug!("client sends a URL as :authority; rewriting this connection's header blocks");
            self.mode = Mode::Rewrite;
        }
        let mut encoded = Vec::new();
        if let Some(priority) = block.priority {
            encoded.extend_from_slice(&priority);
        }
        self.encoder
            .encode_into(headers.iter().map(|(name, value)| (name.as_slice(), value.as_slice())), &mut encoded)?;
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        let mut chunks = encoded.chunks(MAX_FRAME_BYTES).peekable();
        let mut kind = HEADERS;
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let frame_flags = if last { flags | END_HEADERS } else { flags };
            self.output.extend_from_slice(&(chunk.len() as u32).to_be_bytes()[1..]);
            self.output.extend_from_slice(&[kind, frame_flags]);
            self.output.extend_from_slice(&block.stream_id);
            self.output.extend_from_slice(chunk);
            kind = CONTINUATION;
            flags &= !(END_STREAM | PRIORITY);
        }
        Ok(())
    }
}

/// `http://host:port[/]` -> `host:port`; None when the value is not a URL.
fn strip_scheme(value: &[u8]) -> Option<Vec<u8>> {
    let rest = value.strip_prefix(b"http://").or_else(|| value.strip_prefix(b"https://"))?;
    let end = rest.iter().position(|byte| *byte == b'/').unwrap_or(rest.len());
    Some(rest[..end].to_vec())
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP/2 from client: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.output_position < this.output.len() {
                let available = &this.output[this.output_position..];
                let count = available.len().min(buffer.remaining());
                buffer.put_slice(&available[..count]);
                this.output_position += count;
                if this.output_position == this.output.len() {
                    this.output.clear();
                    this.output_position = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Passthrough && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(context, buffer);
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut chunk_buffer = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(context, &mut chunk_buffer))?;
            if chunk_buffer.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            this.input.extend_from_slice(chunk_buffer.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<S> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, bytes)
    }
    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for AuthorityRewrite<tokio::net::TcpStream> {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend_from_slice(&[kind, flags]);
        bytes.extend_from_slice(&stream.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn an_http1_request_passes_through_untouched() {
        let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec();
        let mut rewrite = AuthorityRewrite::new(());
        rewrite.input = request.clone();
        rewrite.process().unwrap();
        assert_eq!(rewrite.output, request);
    }

    fn preface() -> Vec<u8> {
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()
    }

    async fn read_all(input: Vec<u8>) -> Vec<u8> {
        let mut output = Vec::new();
        AuthorityRewrite::new(input.as_slice()).read_to_end(&mut output).await.unwrap();
        output
    }

    fn headers_of(output: &[u8], decoder: &mut Decoder<'static>) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut blocks = Vec::new();
        let mut rest = &output[PREFACE_BYTES..];
        while !rest.is_empty() {
            let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            if rest[3] == HEADERS {
                blocks.push(decoder.decode(&rest[9..9 + length]).unwrap());
            }
            rest = &rest[9 + length..];
        }
        blocks
    }

    #[tokio::test]
    async fn a_url_authority_is_rewritten_on_every_request_of_the_connection() {
        let mut client = Encoder::new();
        let request = |client: &mut Encoder<'static>, path: &[u8]| {
            client.encode([
                (&b":method"[..], &b"POST"[..]),
                (b":authority", b"http://127.0.0.1:2379"),
                (b":path", path),
            ])
        };
        let mut input = preface();
        input.extend(frame(0x4, 0, 0, &[]));
        input.extend(frame(HEADERS, END_HEADERS, 1, &request(&mut client, b"/etcdserverpb.Maintenance/Status")));
        input.extend(frame(0x0, END_STREAM, 1, b"body"));
        // The second block refers to the client's dynamic table: the rewrite must keep both sides in step.
        let second = request(&mut client, b"/etcdserverpb.KV/Range");
        input.extend(frame(HEADERS, 0, 3, &second[..2]));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, &second[2..]));
        let output = read_all(input).await;
        let blocks = headers_of(&output, &mut Decoder::new());
        assert_eq!(blocks.len(), 2);
        for block in &blocks {
            let authority = block.iter().find(|(name, _)| name == b":authority").unwrap();
            assert_eq!(authority.1, b"127.0.0.1:2379");
        }
        assert_eq!(blocks[1][2].1, b"/etcdserverpb.KV/Range");
        assert!(output.windows(4).any(|window| window == b"body"), "other frames pass through");
    }

    #[tokio::test]
    async fn a_plain_authority_leaves_the_connection_untouched() {
        let mut client = Encoder::new();
        let mut input = preface();
        let block = client.encode([(&b":method"[..], &b"POST"[..]), (b":authority", b"127.0.0.1:2379")]);
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
        input.extend(frame(0x0, 0, 1, b"x"));
        assert_eq!(read_all(input.clone()).await, input);
    }
}
