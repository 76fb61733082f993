//! Opening a channel to a broker with the settings every client shares.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::error::{chain, ClientError};

/// Largest response a client decodes: a fetch of the broker's default
/// maximum plus one oversized batch.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Flow-control windows: a few-MiB batch flows without waiting on window updates.
const STREAM_WINDOW_BYTES: u32 = 8 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Largest HTTP/2 frame the broker may send us: fetched batches arrive in
/// fewer frames (the HTTP/2 default is 16 KiB).
const FRAME_BYTES_MAX: u32 = 1024 * 1024;

/// Connects to the broker at `addr` (`host:port`, or a full `http://` URL).
pub async fn connect(addr: &str) -> Result<Channel, ClientError> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(url).map_err(|e| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason: chain(&e),
    })?;
    endpoint
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES_MAX)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            addr: addr.to_string(),
            reason: chain(&e),
        })
}
