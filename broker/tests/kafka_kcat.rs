//! kcat (librdkafka) against the Kafka listener: it produces keyed records
//! with headers, consumes them back from the beginning, and the same records
//! read over gRPC are the ones kcat wrote.

mod common;
mod kafka_support;

use kafka_support::start_broker;
use kafka_support::tools::kcat;

/// A record's key, value and headers, as text.
type Seen = (String, String, Vec<(String, String)>);

#[tokio::test]
async fn kcat_produces_keyed_records_with_headers_and_consumes_them_back() {
    let (broker, kafka) = start_broker().await;
    broker.create_topic("kcat", 2).await;
    let bootstrap = kafka.to_string();
    let common_args = |extra: &[&str]| {
        let mut args = vec![
            "-b".to_string(),
            bootstrap.clone(),
            "-t".to_string(),
            "kcat".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    kcat(
        common_args(&[
            "-P",
            "-p",
            "1",
            "-K",
            ":",
            "-H",
            "source=kcat",
            "-H",
            "trace=42",
            "-X",
            "acks=all",
        ]),
        "alice:/home\nbob:/cart\nalice:/checkout\n",
    )
    .await;
    let consumed = kcat(
        common_args(&[
            "-C",
            "-p",
            "1",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%o|%k|%s|%h\n",
        ]),
        "",
    )
    .await;
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        [
            "0|alice|/home|source=kcat,trace=42",
            "1|bob|/cart|source=kcat,trace=42",
            "2|alice|/checkout|source=kcat,trace=42",
        ]
    );
    // The same records over gRPC.
    let records = common::consume_all(&broker.addr, "kcat", &[1], 3).await;
    let seen: Vec<Seen> = records
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap(),
                String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap(),
                r.headers
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.clone(),
                            String::from_utf8(value.clone().unwrap().to_vec()).unwrap(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let headers = vec![
        ("source".to_string(), "kcat".to_string()),
        ("trace".to_string(), "42".to_string()),
    ];
    assert_eq!(
        seen,
        [
            ("alice".to_string(), "/home".to_string(), headers.clone()),
            ("bob".to_string(), "/cart".to_string(), headers.clone()),
            ("alice".to_string(), "/checkout".to_string(), headers),
        ]
    );
    // kcat lists the topic and its partitions from Metadata.
    let listed = kcat(
        vec![
            "-b".to_string(),
            bootstrap.clone(),
            "-L".to_string(),
            "-t".to_string(),
            "kcat".to_string(),
        ],
        "",
    )
    .await;
    assert!(
        listed.contains("topic \"kcat\" with 2 partitions"),
        "{listed}"
    );
    broker.shutdown().await;
}
