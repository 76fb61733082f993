//! Offline analysis must not disturb a broker's data directory: partitions that were not
//! closed cleanly (a broker may be running on them) are refused unless recovery is
//! allowed, and the clean-shutdown checkpoint is restored when the source closes.

mod support;

use std::sync::Arc;

use support::{record, write_topic};
use weir_log::{LogConfig, PartitionLog};
use weir_sql::{LocalOptions, LocalSource, SqlError, SqlOptions, TopicSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_open_elsewhere_is_refused_with_its_directory_named() {
    let dir = tempfile::tempdir().unwrap();
    write_topic(dir.path(), "t", 1, 10, &[record(0, 1, None, Some("a"))]);
    // Something else (a broker) has the partition open: no clean-shutdown checkpoint.
    let held = PartitionLog::open(&dir.path().join("t-0"), LogConfig::default()).unwrap();
    let source = LocalSource::open(dir.path(), LocalOptions::default()).unwrap();
    let err = source.open_topic("t").await.unwrap_err();
    assert!(
        matches!(&err, SqlError::NotClosedCleanly { dir: d } if d.ends_with("t-0")),
        "{err}"
    );
    assert!(err.to_string().contains("t-0"), "{err}");
    held.close().unwrap();
    assert!(source.open_topic("t").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_source_restores_the_clean_shutdown_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    write_topic(
        dir.path(),
        "t",
        2,
        10,
        &[record(0, 1, None, Some("a")), record(1, 2, None, Some("b"))],
    );
    let checkpoint = dir.path().join("t-1/clean-shutdown");
    assert!(checkpoint.is_file());
    let source = Arc::new(LocalSource::open(dir.path(), LocalOptions::default()).unwrap());
    let ctx = weir_sql::new_session(Arc::clone(&source) as _, SqlOptions::default())
        .await
        .unwrap();
    assert_eq!(
        support::query_rows(&ctx, "SELECT count(*) FROM t").await,
        vec![vec!["2"]]
    );
    assert!(
        !checkpoint.exists(),
        "an open log has no clean-shutdown checkpoint"
    );
    drop(ctx);
    source.close().unwrap();
    assert!(checkpoint.is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_can_be_allowed_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    write_topic(dir.path(), "t", 1, 10, &[record(0, 1, None, Some("a"))]);
    std::fs::remove_file(dir.path().join("t-0/clean-shutdown")).unwrap();
    let source = Arc::new(
        LocalSource::open(
            dir.path(),
            LocalOptions {
                allow_recovery: true,
            },
        )
        .unwrap(),
    );
    let ctx = weir_sql::new_session(Arc::clone(&source) as _, SqlOptions::default())
        .await
        .unwrap();
    assert_eq!(
        support::query_rows(&ctx, "SELECT value_str FROM t").await,
        vec![vec!["a"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_data_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalSource::open(&dir.path().join("nope"), LocalOptions::default()).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_internal_topics_are_not_tables() {
    let dir = tempfile::tempdir().unwrap();
    write_topic(dir.path(), "t", 1, 10, &[record(0, 1, None, Some("a"))]);
    write_topic(
        dir.path(),
        "__consumer_offsets",
        2,
        10,
        &[record(0, 1, None, Some("group record"))],
    );
    let source = LocalSource::open(dir.path(), LocalOptions::default()).unwrap();
    assert_eq!(source.topic_names().await.unwrap(), vec!["t".to_string()]);
    assert!(source
        .open_topic("__consumer_offsets")
        .await
        .unwrap()
        .is_none());
}
