//! Kafka RecordBatch v2: the unit of storage, replication and transfer.
