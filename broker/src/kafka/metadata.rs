//! Metadata (v0-v12). A broker in no cluster answers as its one node,
//! leader of every partition. A broker in a cluster answers from the
//! cluster's metadata, as every other broker of it would: every registered
//! broker with a Kafka listener, the controller, and each partition's
//! leader, epoch, replicas and in-sync replicas, including topics this
//! broker has not created locally yet.
//!
//! An unknown topic is UNKNOWN_TOPIC_OR_PARTITION, unless the broker's
//! `auto_create_topics` is on and the request allows it (v0-v3 always do;
//! v4+ say so in `allow_auto_topic_creation`): then it is created, with
//! `num_partitions` partitions and replication factor 1, as Kafka's
//! `auto.create.topics.enable` does. In a cluster the answer for it is
//! LEADER_NOT_AVAILABLE until its placement reaches this broker's metadata,
//! and the client asks again. Internal topics are never created so.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::connection::Session;
use super::error_code;
use super::leaders::broker_id;
use crate::broker::{Broker, Topic};
use crate::cluster::{BrokerRecord, ClusterMetadata, NodeId, TopicMetadata};
use crate::error::BrokerError;
use crate::internal_topics::is_internal;
use crate::replication::ClusterLink;

/// Reported as the cluster id (Metadata v2+), the same by every broker.
const CLUSTER_ID: &str = "weir";

pub async fn handle(session: &Session, request: MetadataRequest, version: i16) -> MetadataResponse {
    match session.broker.cluster() {
        None => alone(session, request, version).await,
        Some(link) => in_cluster(session, link, request, version).await,
    }
}

async fn alone(session: &Session, request: MetadataRequest, version: i16) -> MetadataResponse {
    let node_id = session.broker.config().node_id;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(node_id))
        .with_host(StrBytes::from_string(session.advertised.ip().to_string()))
        .with_port(i32::from(session.advertised.port()));
    let topics = match requested(&request, version) {
        None => match session.broker.topics() {
            Ok(topics) => topics.iter().map(|t| describe(t, node_id)).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list topics for Metadata");
                Vec::new()
            }
        },
        Some(names) => {
            let mut topics = Vec::with_capacity(names.len());
            for name in names {
                topics.push(match name {
                    Some(name) => match session.broker.topic(&name) {
                        Ok(topic) => describe(&topic, node_id),
                        Err(error @ BrokerError::UnknownTopic { .. }) => {
                            match auto_create(session, &request, version, &name).await {
                                Some(Ok(())) => match session.broker.topic(&name) {
                                    Ok(topic) => describe(&topic, node_id),
                                    Err(error) => unknown(name, error_code::code(&error)),
                                },
                                Some(Err(code)) => unknown(name, code),
                                None => unknown(name, error_code::code(&error)),
                            }
                        }
                        Err(error) => unknown(name, error_code::code(&error)),
                    },
                    // Asked by topic id: Weir's topics have none yet.
                    None => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                });
            }
            topics
        }
    };
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(BrokerId(if version >= 1 { node_id } else { -1 }))
        .with_topics(topics)
}

/// The answer of a broker in a cluster. A topic the cluster's metadata has
/// is described from it; a local topic it lacks (an internal topic, or one
/// created before this broker joined a cluster) is this broker's alone and
/// described as on a broker in no cluster.
async fn in_cluster(
    session: &Session,
    link: &ClusterLink,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // Copied out of the watches at once: no borrow is held across an await.
    let metadata: Arc<ClusterMetadata> = Arc::clone(&link.quorum.metadata().borrow());
    let controller = link.quorum.view().borrow().status.leader_id;
    let broker = &session.broker;
    let me = link.node_id;
    let topics = match requested(&request, version) {
        None => {
            let mut topics: Vec<(String, MetadataResponseTopic)> = metadata
                .topics
                .values()
                .map(|topic| (topic.name.clone(), from_cluster(broker, me, topic)))
                .collect();
            match broker.topics() {
                Ok(local) => {
                    for topic in local {
                        if !metadata.topics.contains_key(&topic.name)
                            && local_only(broker, &topic.name).await
                        {
                            topics.push((topic.name.clone(), describe(&topic, broker_id(me).0)));
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list local topics for Metadata"),
            }
            topics.sort_by(|a, b| a.0.cmp(&b.0));
            topics.into_iter().map(|(_, topic)| topic).collect()
        }
        Some(names) => {
            let mut topics = Vec::with_capacity(names.len());
            for name in names {
                topics.push(match name {
                    Some(name) => {
                        let topic = named(broker, me, &metadata, name.clone()).await;
                        let unknown_topic = ResponseError::UnknownTopicOrPartition.code();
                        if topic.error_code != unknown_topic {
                            topic
                        } else {
                            match auto_create(session, &request, version, &name).await {
                                // Placed through the metadata log: the client asks
                                // again once the leaders are known.
                                Some(Ok(())) => {
                                    unknown(name, ResponseError::LeaderNotAvailable.code())
                                }
                                Some(Err(code)) => unknown(name, code),
                                None => topic,
                            }
                        }
                    }
                    None => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                });
            }
            topics
        }
    };
    let controller_id = match controller {
        Some(id) if version >= 1 => broker_id(id),
        _ => BrokerId(-1),
    };
    MetadataResponse::default()
        .with_brokers(brokers(&metadata, me, session.advertised))
        .with_cluster_id((version >= 2).then(|| StrBytes::from_static_str(CLUSTER_ID)))
        .with_controller_id(controller_id)
        .with_topics(topics)
}

/// One topic asked for by name, on a broker in a cluster.
async fn named(
    broker: &Broker,
    me: NodeId,
    metadata: &ClusterMetadata,
    name: String,
) -> MetadataResponseTopic {
    if let Some(topic) = metadata.topics.get(&name) {
        return from_cluster(broker, me, topic);
    }
    let unknown = |code: i16| {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            .with_error_code(code)
    };
    match broker.topic(&name) {
        Ok(topic) if local_only(broker, &name).await => describe(&topic, broker_id(me).0),
        // Created through the cluster and deleted from its metadata since:
        // its local replicas are on their way out.
        Ok(_) => unknown(ResponseError::UnknownTopicOrPartition.code()),
        Err(error) => unknown(error_code::code(&error)),
    }
}

/// Whether a local topic is this broker's alone rather than a cluster
/// topic's replicas: internal topics (`__consumer_offsets` is not
/// replicated yet) and topics not created through the metadata log.
async fn local_only(broker: &Broker, name: &str) -> bool {
    is_internal(name) || !broker.is_cluster_topic(name).await
}

/// A topic as the cluster's metadata has it.
fn from_cluster(broker: &Broker, me: NodeId, topic: &TopicMetadata) -> MetadataResponseTopic {
    let local = broker.topic(&topic.name).ok();
    let ids = |ids: &[NodeId]| ids.iter().map(|&id| broker_id(id)).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, assignment)| {
            let described = MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(index).unwrap_or(i32::MAX))
                .with_leader_epoch(assignment.leader_epoch)
                .with_replica_nodes(ids(&assignment.replicas))
                .with_isr_nodes(ids(&assignment.isr));
            // A broker knows the storage of its own replicas only: one
            // whose log did not open is offline.
            let offline_here = assignment.replicas.contains(&me)
                && local
                    .as_ref()
                    .and_then(|topic| topic.partitions.get(index))
                    .is_some_and(|partition| partition.offline_cause().is_some());
            let described = if offline_here {
                described.with_offline_replicas(vec![broker_id(me)])
            } else {
                described
            };
            match assignment.leader {
                Some(leader) => described.with_leader_id(broker_id(leader)),
                // No in-sync replica to elect (no unclean election): Kafka's
                // answer, after which clients wait and ask again.
                None => described
                    .with_leader_id(BrokerId(-1))
                    .with_error_code(ResponseError::LeaderNotAvailable.code()),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

/// Every registered broker with a Kafka listener, by node id. This broker
/// is listed at the address the client reached (as FindCoordinator names
/// it), registered yet or not: it is serving this request over Kafka.
fn brokers(
    metadata: &ClusterMetadata,
    me: NodeId,
    reached: SocketAddr,
) -> Vec<MetadataResponseBroker> {
    let endpoint = |id: NodeId, host: String, port: u16| {
        MetadataResponseBroker::default()
            .with_node_id(broker_id(id))
            .with_host(StrBytes::from_string(host))
            .with_port(i32::from(port))
    };
    let mut brokers: Vec<MetadataResponseBroker> = metadata
        .brokers
        .values()
        .filter(|record| record.node_id != me)
        .filter_map(|record| {
            let (host, port) = kafka_endpoint(record)?;
            Some(endpoint(record.node_id, host, port))
        })
        .collect();
    brokers.push(endpoint(me, reached.ip().to_string(), reached.port()));
    brokers.sort_by_key(|broker| broker.node_id.0);
    brokers
}

/// Where a broker's Kafka listener is reached: its registered address, with
/// an unspecified host (a listener on 0.0.0.0 or [::]) replaced by the host
/// of its gRPC address, through which the other brokers reach it. `None`
/// for a broker with no Kafka listener.
pub(crate) fn kafka_endpoint(record: &BrokerRecord) -> Option<(String, u16)> {
    let registered = record.kafka_address.as_deref()?;
    let Ok(listening) = registered.parse::<SocketAddr>() else {
        // Brokers register their listener's bound address, always IP:PORT.
        tracing::debug!(
            node_id = record.node_id,
            registered,
            "a registered Kafka address that is not IP:PORT; left out of Metadata"
        );
        return None;
    };
    if !listening.ip().is_unspecified() {
        return Some((listening.ip().to_string(), listening.port()));
    }
    let host = record
        .address
        .rsplit_once(':')
        .map_or(record.address.as_str(), |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), listening.port()))
}

/// A topic answered by its error alone.
fn unknown(name: String, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name))))
        .with_error_code(code)
}

/// Creates `name`, a topic that does not exist, unless it is not to be
/// created (`None`): the broker's `auto_create_topics` is off, the request
/// does not allow it, or the topic is internal. Otherwise the creation's
/// outcome: another request creating it at the same moment is success too;
/// a refusal is its Kafka error code (an invalid name).
async fn auto_create(
    session: &Session,
    request: &MetadataRequest,
    version: i16,
    name: &str,
) -> Option<Result<(), i16>> {
    let config = session.broker.config();
    let allowed = version < 4 || request.allow_auto_topic_creation;
    if !config.auto_create_topics || !allowed || is_internal(name) {
        return None;
    }
    let created = session
        .broker
        .create_topic(
            name,
            config.num_partitions,
            super::topics::REPLICATION_FACTOR_DEFAULT,
            std::collections::BTreeMap::new(),
        )
        .await;
    Some(match created {
        Ok(_) => {
            tracing::info!(
                topic = name,
                partitions = config.num_partitions,
                "topic auto-created"
            );
            Ok(())
        }
        Err(BrokerError::TopicExists { .. }) => Ok(()),
        Err(error) => {
            tracing::debug!(topic = name, %error, "topic not auto-created");
            Err(error_code::code(&error))
        }
    })
}

/// The names asked for, `None` for every topic: a null list from v1, an
/// empty one in v0.
fn requested(request: &MetadataRequest, version: i16) -> Option<Vec<Option<String>>> {
    let topics = request.topics.as_ref()?;
    if version == 0 && topics.is_empty() {
        return None;
    }
    Some(
        topics
            .iter()
            .map(|topic| topic.name.as_ref().map(|name| name.0.as_str().to_string()))
            .collect(),
    )
}

fn describe(topic: &Topic, node_id: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let index = i32::try_from(partition.index()).unwrap_or(i32::MAX);
            let described = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(partition.leader_epoch())
                .with_replica_nodes(vec![BrokerId(node_id)]);
            if partition.offline_cause().is_some() {
                // As Kafka shows a partition whose only replica's log dir failed.
                described
                    .with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(node_id)])
            } else {
                described
                    .with_leader_id(BrokerId(node_id))
                    .with_isr_nodes(vec![BrokerId(node_id)])
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(address: &str, kafka_address: Option<&str>) -> BrokerRecord {
        BrokerRecord {
            node_id: 2,
            address: address.to_owned(),
            kafka_address: kafka_address.map(str::to_owned),
        }
    }

    #[test]
    fn a_listener_on_every_interface_is_advertised_at_the_grpc_host() {
        assert_eq!(
            kafka_endpoint(&record("10.0.0.2:9301", Some("0.0.0.0:9092"))),
            Some(("10.0.0.2".to_owned(), 9092))
        );
        assert_eq!(
            kafka_endpoint(&record("[fd00::2]:9301", Some("[::]:9092"))),
            Some(("fd00::2".to_owned(), 9092))
        );
        assert_eq!(
            kafka_endpoint(&record("broker-2:9301", Some("0.0.0.0:9092"))),
            Some(("broker-2".to_owned(), 9092))
        );
    }

    #[test]
    fn a_listener_on_one_address_is_advertised_there_and_none_is_left_out() {
        assert_eq!(
            kafka_endpoint(&record("10.0.0.2:9301", Some("192.168.1.7:9092"))),
            Some(("192.168.1.7".to_owned(), 9092))
        );
        assert_eq!(kafka_endpoint(&record("10.0.0.2:9301", None)), None);
    }
}
