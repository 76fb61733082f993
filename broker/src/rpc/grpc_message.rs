//! The gRPC framing shared by the routes that bypass tonic's codec (produce
//! and fetch): reading a unary request's one message into memory reserved
//! from the broker's [`MemoryPool`] before the body is buffered, and a
//! response body of ready chunks that holds its reservation until it has
//! been sent or dropped.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::Status;

use crate::memory_pool::{MemoryPool, Reservation};

/// gRPC message prefix: compressed flag (1 byte), length (u32, big-endian).
pub const GRPC_PREFIX_BYTES: usize = 5;

/// How long a request without a `grpc-timeout` waits for memory at most:
/// half of Kafka's default `request.timeout.ms` (30 s), so the broker answers
/// before a client with that timeout gives up and retries.
const MEMORY_WAIT_MS_DEFAULT: u64 = 15_000;

/// How long a request may wait for memory: half its `grpc-timeout` (the same
/// rule as a produce waiting for earlier batches, so the answer arrives before
/// tonic cuts the request at its deadline), or [`MEMORY_WAIT_MS_DEFAULT`].
pub fn memory_wait(headers: &http::HeaderMap) -> Duration {
    headers
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(Duration::from_millis(MEMORY_WAIT_MS_DEFAULT), |timeout| {
            (timeout / 2).min(Duration::from_millis(MEMORY_WAIT_MS_DEFAULT))
        })
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The one gRPC message of a unary request body. Its length prefix is read
/// first: past `limit` the request is refused; otherwise its length is
/// reserved from `pool` (waiting until `deadline`) before the rest of the
/// body is read, into a buffer of exactly that size. Until then only the
/// frame that carried the prefix is held, and HTTP/2 flow control stops the
/// client once the stream's window is full.
///
/// The prefix must arrive within `body_timeout` of the call and the rest
/// within `body_timeout` of the reservation (`request_body_timeout_ms`): a
/// client that stalls mid-body would otherwise hold its reservation for as
/// long as it keeps the stream open. Past it the request fails with
/// DEADLINE_EXCEEDED, and the reservation is given back as it drops.
pub async fn read_message(
    mut body: Body,
    limit: usize,
    pool: &Arc<MemoryPool>,
    deadline: Instant,
    body_timeout: Duration,
    what: &str,
) -> Result<(Bytes, Reservation), Status> {
    let timed_out = |received: usize, len: Option<usize>| {
        let of = len.map_or_else(String::new, |len| format!(" of {len}"));
        Status::deadline_exceeded(format!(
            "the body of {what} did not arrive within request_body_timeout_ms ({} ms): \
             {received}{of} bytes received",
            body_timeout.as_millis()
        ))
    };
    let mut prefix = [0u8; GRPC_PREFIX_BYTES];
    let mut prefix_len = 0;
    // Bytes after the prefix in the frame that completed it.
    let mut rest = Bytes::new();
    let read_prefix = async {
        while prefix_len < GRPC_PREFIX_BYTES {
            let Some(frame) = body.frame().await else {
                return Err(Status::invalid_argument(format!(
                    "the body of {what} ended inside its message"
                )));
            };
            let Ok(mut data) = frame?.into_data() else {
                continue;
            };
            let take = data.len().min(GRPC_PREFIX_BYTES - prefix_len);
            prefix[prefix_len..prefix_len + take].copy_from_slice(&data.split_to(take));
            prefix_len += take;
            rest = data;
        }
        Ok(())
    };
    match tokio::time::timeout(body_timeout, read_prefix).await {
        Ok(read) => read?,
        Err(_) => return Err(timed_out(prefix_len, None)),
    }
    if prefix[0] != 0 {
        return Err(Status::unimplemented(format!(
            "compressed messages are not supported ({what})"
        )));
    }
    let len = usize::try_from(u32::from_be_bytes([
        prefix[1], prefix[2], prefix[3], prefix[4],
    ]))
    .unwrap_or(usize::MAX);
    if len > limit {
        return Err(Status::resource_exhausted(format!(
            "{what} is {len} bytes, more than the {limit} allowed (request_bytes_max)"
        )));
    }
    let reservation = pool
        .reserve(len, deadline, what)
        .await
        .map_err(Status::from)?;
    let mut buf = BytesMut::with_capacity(len);
    let read_rest = async {
        let mut data = rest;
        loop {
            if buf.len() + data.len() > len {
                return Err(Status::invalid_argument(format!(
                    "{what} carries more than its one message"
                )));
            }
            buf.extend_from_slice(&data);
            let Some(frame) = body.frame().await else {
                return Ok(());
            };
            data = match frame?.into_data() {
                Ok(data) => data,
                Err(_) => Bytes::new(),
            };
        }
    };
    match tokio::time::timeout(body_timeout, read_rest).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(timed_out(
                GRPC_PREFIX_BYTES + buf.len(),
                Some(GRPC_PREFIX_BYTES + len),
            ))
        }
    }
    if buf.len() != len {
        return Err(Status::invalid_argument(format!(
            "the body of {what} ended inside its message ({} of {len} bytes)",
            buf.len()
        )));
    }
    Ok((buf.freeze(), reservation))
}

/// A successful gRPC response of ready `chunks`.
pub fn response(chunks: VecDeque<Bytes>, memory: Option<Reservation>) -> http::Response<Body> {
    let mut http = http::Response::new(Body::new(ChunkBody {
        chunks,
        trailers_sent: false,
        _memory: memory,
    }));
    http.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    http
}

/// Data chunks, then the `grpc-status: 0` trailers. The reservation is
/// given back when hyper drops the body: after the last chunk was written,
/// or when the stream was reset.
struct ChunkBody {
    chunks: VecDeque<Bytes>,
    trailers_sent: bool,
    _memory: Option<Reservation>,
}

impl HttpBody for ChunkBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if self.trailers_sent {
            return Poll::Ready(None);
        }
        self.trailers_sent = true;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.trailers_sent && self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_bad_ones_are_ignored() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("123456789m"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
    }
}
