//! Topic administration: create, list, describe, delete, alter configs, add
//! partitions. Group
//! administration is in `admin_groups`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tonic::transport::Channel;

use super::cluster_metadata::ClusterMetadata;
use super::connection::{bootstrap_list, connect, RESPONSE_BYTES_MAX};
use super::error::ClientError;
use crate::proto::admin_client::AdminClient;
use crate::proto::{
    AlterConfigsRequest, CreatePartitionsRequest, CreateTopicRequest, DeleteTopicRequest,
    DescribeTopicRequest, ListTopicsRequest, ReplicaAssignment,
};

/// A topic as the admin API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicInfo {
    pub topic: String,
    pub partition_count: u32,
    pub replication_factor: u32,
    /// Config overrides; empty from `list_topics`.
    pub configs: BTreeMap<String, String>,
    /// Per-partition state; empty from `list_topics`.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition as `describe_topic` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionInfo {
    pub partition: u32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub log_start_offset: u64,
    pub log_end_offset: u64,
    pub high_watermark: u64,
    pub size_bytes: u64,
    /// False when the partition's log did not open at the broker's start.
    pub online: bool,
    /// Why the partition is offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_cause: Option<String>,
}

/// The admin client. Topic and group requests go to the broker it connected
/// to (any broker of a cluster answers them); offset lookups of partitions
/// go to each partition's leader.
#[derive(Debug, Clone)]
pub struct Admin {
    client: AdminClient<Channel>,
    channel: Channel,
    metadata: Arc<ClusterMetadata>,
}

impl Admin {
    /// Connects to `addr`: one broker, or a bootstrap list `h1:p1,h2:p2`
    /// (the first that answers).
    pub async fn connect(addr: &str) -> Result<Admin, ClientError> {
        let channel = connect(addr).await?;
        let bootstrap = bootstrap_list(addr)?
            .into_iter()
            .map(String::from)
            .collect();
        Ok(Admin::start(channel, bootstrap))
    }

    pub fn from_channel(channel: Channel) -> Admin {
        Admin::start(channel, Vec::new())
    }

    fn start(channel: Channel, bootstrap: Vec<String>) -> Admin {
        Admin {
            client: AdminClient::new(channel.clone()).max_decoding_message_size(RESPONSE_BYTES_MAX),
            metadata: Arc::new(ClusterMetadata::new(channel.clone(), bootstrap)),
            channel,
        }
    }

    /// The coordinator of `group_id`, found by asking the brokers this client knows.
    pub(crate) fn coordinator(&self, group_id: &str) -> crate::group::Coordinator {
        crate::group::Coordinator::asking(Arc::clone(&self.metadata), group_id)
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    /// Creates `topic` with `partitions` partitions and the given config overrides.
    pub async fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        replication_factor: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        self.client
            .clone()
            .create_topic(CreateTopicRequest {
                topic: topic.to_string(),
                partitions,
                replication_factor,
                configs: configs.clone().into_iter().collect(),
                assignments: Vec::new(),
            })
            .await?;
        Ok(())
    }

    /// Creates `topic` with one partition per entry of `replicas`, each on the brokers
    /// it names (the first leads), as Kafka's `--replica-assignment`.
    pub async fn create_topic_placed(
        &self,
        topic: &str,
        replicas: &[Vec<u64>],
        configs: &BTreeMap<String, String>,
    ) -> Result<(), ClientError> {
        self.client
            .clone()
            .create_topic(CreateTopicRequest {
                topic: topic.to_string(),
                configs: configs.clone().into_iter().collect(),
                assignments: replicas
                    .iter()
                    .map(|brokers| ReplicaAssignment {
                        brokers: brokers.clone(),
                    })
                    .collect(),
                ..CreateTopicRequest::default()
            })
            .await?;
        Ok(())
    }

    /// Every topic but the broker's internal ones, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let response = self
            .client
            .clone()
            .list_topics(ListTopicsRequest {
                list_internal: false,
            })
            .await?
            .into_inner();
        Ok(response
            .topics
            .into_iter()
            .map(|t| TopicInfo {
                topic: t.topic,
                partition_count: t.partitions,
                replication_factor: t.replication_factor,
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            })
            .collect())
    }

    /// A topic's settings and the state of each partition.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        let response = self
            .client
            .clone()
            .describe_topic(DescribeTopicRequest {
                topic: topic.to_string(),
            })
            .await?
            .into_inner();
        let mut partitions: Vec<PartitionInfo> = response
            .partitions
            .into_iter()
            .map(|p| PartitionInfo {
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas,
                isr: p.isr,
                log_start_offset: p.log_start_offset,
                log_end_offset: p.log_end_offset,
                high_watermark: p.high_watermark,
                size_bytes: p.size_bytes,
                online: p.offline_cause.is_empty(),
                offline_cause: Some(p.offline_cause).filter(|c| !c.is_empty()),
            })
            .collect();
        partitions.sort_by_key(|p| p.partition);
        Ok(TopicInfo {
            topic: response.topic,
            partition_count: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
            replication_factor: response.replication_factor,
            configs: response.configs.into_iter().collect(),
            partitions,
        })
    }

    /// Deletes `topic` and its data.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        self.client
            .clone()
            .delete_topic(DeleteTopicRequest {
                topic: topic.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Sets config overrides (an empty value removes one); returns the
    /// overrides now in force.
    pub async fn alter_configs(
        &self,
        topic: &str,
        set: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ClientError> {
        let response = self
            .client
            .clone()
            .alter_configs(AlterConfigsRequest {
                topic: topic.to_string(),
                set: set.clone().into_iter().collect(),
            })
            .await?
            .into_inner();
        Ok(response.configs.into_iter().collect())
    }

    /// Grows `topic` to `partitions` partitions (more than it has). Keyed
    /// records produced afterwards may hash to a different partition.
    pub async fn create_partitions(&self, topic: &str, partitions: u32) -> Result<(), ClientError> {
        self.client
            .clone()
            .create_partitions(CreatePartitionsRequest {
                topic: topic.to_string(),
                partitions,
                validate_only: false,
                assignments: Vec::new(),
            })
            .await?;
        Ok(())
    }
}
