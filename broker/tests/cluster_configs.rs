//! Topic settings in a cluster of three brokers go through the metadata log: a change
//! asked of any broker reaches every replica, a bad value is refused before it is
//! proposed, and a broker that was stopped meanwhile takes the change when it returns.

mod common;

use std::collections::BTreeMap;

use common::cluster::Cluster;
use weir_client::Admin;

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settings_change_reaches_every_broker() {
    let mut cluster = Cluster::start().await;
    cluster
        .wait_all("every broker registered", |m| m.brokers.len() == 3)
        .await;
    let admin = Admin::connect(&cluster.addr(1)).await.unwrap();
    admin
        .create_topic("tuned", 3, 3, &settings(&[("retention.ms", "60000")]))
        .await
        .unwrap();
    let everywhere = |cluster: &Cluster, ids: &[u64], expected: &BTreeMap<String, String>| {
        ids.iter().all(|id| {
            cluster.brokers[id]
                .broker()
                .topic("tuned")
                .is_ok_and(|t| &t.configs == expected)
        })
    };

    // Asked of broker 2: every broker has it, the metadata too.
    let other = Admin::connect(&cluster.addr(2)).await.unwrap();
    let now = other
        .alter_configs(
            "tuned",
            &settings(&[("retention.ms", ""), ("segment.ms", "120000")]),
        )
        .await
        .unwrap();
    let expected = settings(&[("segment.ms", "120000")]);
    assert_eq!(now, expected);
    cluster
        .wait_for("every broker with the new settings", || {
            everywhere(&cluster, &[1, 2, 3], &expected)
        })
        .await;
    assert_eq!(cluster.metadata(3).topics["tuned"].configs, expected);

    // A bad value is refused, and nothing is proposed.
    let refused = other
        .alter_configs("tuned", &settings(&[("segment.ms", "soon")]))
        .await;
    assert!(refused.is_err(), "{refused:?}");

    // Broker 3 is away while the settings change; it takes them when it returns.
    cluster.stop_broker(3).await;
    cluster.controller().await;
    let expected = settings(&[
        ("cleanup.policy", "compact,delete"),
        ("segment.ms", "120000"),
    ]);
    admin
        .alter_configs("tuned", &settings(&[("cleanup.policy", "compact,delete")]))
        .await
        .unwrap();
    cluster.start_broker(3).await;
    cluster
        .wait_for("the returning broker has the change", || {
            everywhere(&cluster, &[1, 2, 3], &expected)
        })
        .await;
    for id in [1, 2, 3] {
        cluster.stop_broker(id).await;
    }
}
