//! A topic deletion interrupted by a crash is finished at the next start, and
//! a leftover deletion mark never deletes a topic created later under the
//! same name. (The full-disk path that leaves such marks is exercised on a
//! real full file system by the CLI test `cli_broker_full_disk`.)

use std::collections::BTreeMap;
use std::path::Path;

use weir_broker::{partition_dir, Broker, BrokerConfig};

fn config(data_dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    }
}

fn marked(data_dir: &Path, topic: &str, partition: u32) -> std::path::PathBuf {
    let mut name = partition_dir(data_dir, topic, partition).into_os_string();
    name.push(".delete");
    name.into()
}

fn topic_names(broker: &Broker) -> Vec<String> {
    let mut names: Vec<String> = broker
        .topics()
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_start_finishes_a_deletion_that_had_marked_its_directories() {
    let data = tempfile::tempdir().unwrap();
    {
        let broker = Broker::open(config(data.path())).unwrap();
        broker
            .create_topic("gone", 3, 1, BTreeMap::new())
            .await
            .unwrap();
        broker
            .create_topic("kept", 1, 1, BTreeMap::new())
            .await
            .unwrap();
        broker.close().await.unwrap();
    }
    // A crash after the first partition directory was marked and emptied,
    // before topics.json was rewritten.
    std::fs::rename(
        partition_dir(data.path(), "gone", 0),
        marked(data.path(), "gone", 0),
    )
    .unwrap();

    let broker = Broker::open(config(data.path())).unwrap();
    assert_eq!(topic_names(&broker), ["kept"]);
    for partition in 0..3 {
        assert!(!partition_dir(data.path(), "gone", partition).exists());
        assert!(!marked(data.path(), "gone", partition).exists());
    }
    broker.close().await.unwrap();
    drop(broker);
    let broker = Broker::open(config(data.path())).unwrap();
    assert_eq!(
        topic_names(&broker),
        ["kept"],
        "the deletion was made durable"
    );
    broker.close().await.unwrap();
}

#[tokio::test]
async fn a_leftover_mark_does_not_delete_a_topic_created_again_under_its_name() {
    let data = tempfile::tempdir().unwrap();
    let broker = Broker::open(config(data.path())).unwrap();
    // A mark left for partition 5 of an older, larger topic of the same name.
    std::fs::create_dir_all(marked(data.path(), "reborn", 5)).unwrap();
    broker
        .create_topic("reborn", 2, 1, BTreeMap::new())
        .await
        .unwrap();
    broker.close().await.unwrap();
    drop(broker);
    let broker = Broker::open(config(data.path())).unwrap();
    assert_eq!(topic_names(&broker), ["reborn"]);
    broker.close().await.unwrap();
}
