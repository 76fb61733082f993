//! What the pipeline tests against a broker share: the broker itself, in this process on
//! a loopback port, with group settings that make rebalances fast to wait for.

use weir_broker::group::GroupConfig;
use weir_broker::{BrokerConfig, RunningBroker};

/// A broker on `data`, listening on 127.0.0.1 port 0: groups rebalance without the
/// initial delay, members heartbeat every 100 ms, and one is dropped after
/// `session_timeout_ms` without a heartbeat (the wait a killed worker's partitions
/// have before they move).
pub async fn start_broker(data: &std::path::Path, session_timeout_ms: i64) -> RunningBroker {
    RunningBroker::start(BrokerConfig {
        data_dir: data.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        offsets_topic_partitions: 2,
        groups: GroupConfig {
            initial_rebalance_delay_ms: 0,
            session_timeout_ms,
            heartbeat_interval_ms: 100,
            ..GroupConfig::default()
        },
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}
