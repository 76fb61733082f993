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

/// Connects to the broker at `addr` (`host:port`, or a full `http://` URL),
/// or to the first that answers of a bootstrap list (`h1:p1,h2:p2,h3:p3`,
/// tried in order, as Kafka's `bootstrap.servers`).
pub async fn connect(addr: &str) -> Result<Channel, ClientError> {
    let mut last_error = None;
    for one in bootstrap_list(addr)? {
        match endpoint(one)?.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) => {
                last_error = Some(ClientError::Connect {
                    addr: one.to_string(),
                    reason: chain(&e),
                })
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason: "no broker address".to_string(),
    }))
}

/// The addresses of a bootstrap list; an empty entry is refused.
pub(crate) fn bootstrap_list(addr: &str) -> Result<Vec<&str>, ClientError> {
    let list: Vec<&str> = addr.split(',').map(str::trim).collect();
    if list.iter().any(|one| one.is_empty()) {
        return Err(ClientError::InvalidAddress {
            addr: addr.to_string(),
            reason: "expected host:port or a comma-separated list of them".to_string(),
        });
    }
    Ok(list)
}

/// A channel to `addr` that connects on its first request (and reconnects
/// after a failure): the connection to a partition leader.
pub(crate) fn connect_lazy(addr: &str) -> Result<Channel, ClientError> {
    Ok(endpoint(addr)?.connect_lazy())
}

fn endpoint(addr: &str) -> Result<Endpoint, ClientError> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(url).map_err(|e| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason: chain(&e),
    })?;
    Ok(endpoint
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES_MAX)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bootstrap_list_is_split_on_commas_and_an_empty_entry_is_refused() {
        assert_eq!(
            bootstrap_list("a:1, b:2,c:3").unwrap(),
            vec!["a:1", "b:2", "c:3"]
        );
        assert_eq!(bootstrap_list("a:1").unwrap(), vec!["a:1"]);
        for bad in ["", "a:1,", "a:1,,b:2"] {
            let error = bootstrap_list(bad).unwrap_err();
            assert!(
                matches!(error, ClientError::InvalidAddress { .. }),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn connect_fails_naming_the_last_broker_tried_when_none_of_the_list_answers() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let error = connect(&format!("{closed_addr},{closed_addr}"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ClientError::Connect { addr, .. } if *addr == closed_addr),
            "{error:?}"
        );
    }
}
