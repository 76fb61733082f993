//! A topic's `compression.type`: produced batches in another codec are rewritten in the
//! topic's before they are appended, as Kafka's broker recompresses them. Each batch keeps
//! its records (timestamps, keys, values, headers, in order), its producer id, epoch and
//! base sequence, and its timestamp type; only the codec, and so the bytes and the CRC,
//! change. Topics left at `producer` (the default) never come here: their batches are
//! stored as they came, with no copy.

use crate::batch::{
    self, BatchBuilder, Compression, ProduceChecks, RecordValidator, TimestampType,
};
use crate::LogError;

/// `batches` (concatenated produced batches) with every batch not in `target` rewritten
/// in it, or `None` when all already are. Each batch is validated as an append validates
/// it first (CRC, every record, the decompressed size bounded by `checks`), so a damaged
/// or hostile batch is refused here as it would be there.
pub(crate) fn recompress(
    validator: &mut RecordValidator,
    batches: &[u8],
    target: Compression,
    checks: &ProduceChecks,
) -> Result<Option<Vec<u8>>, LogError> {
    let mut position = 0;
    let mut all_in_target = true;
    for item in batch::batches(batches) {
        let (header, bytes) = item.map_err(|source| LogError::BatchAt { position, source })?;
        let at = |source| LogError::BatchAt { position, source };
        if header.compression().map_err(at)? != target {
            all_in_target = false;
            break;
        }
        position += bytes.len();
    }
    if all_in_target {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(batches.len());
    let mut position = 0;
    for item in batch::batches(batches) {
        let (header, bytes) = item.map_err(|source| LogError::BatchAt { position, source })?;
        let at = |source| LogError::BatchAt { position, source };
        validator.validate_produced(bytes, checks).map_err(at)?;
        if header.compression().map_err(at)? == target {
            out.extend_from_slice(bytes);
        } else {
            let mut builder = BatchBuilder::new(target).with_producer(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
            );
            if header.timestamp_type() == TimestampType::LogAppendTime {
                builder = builder.with_log_append_time(header.max_timestamp);
            }
            for record in batch::decode_records(bytes).map_err(at)? {
                let headers: Vec<(&str, Option<&[u8]>)> = record
                    .headers
                    .iter()
                    .map(|h| (h.key.as_str(), h.value.as_deref()))
                    .collect();
                builder.push(
                    record.timestamp,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    &headers,
                );
            }
            out.extend_from_slice(&builder.build().map_err(at)?);
        }
        position += bytes.len();
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produced(codec: Compression, values: &[&str]) -> Vec<u8> {
        let mut builder = BatchBuilder::new(codec).with_producer(7, 2, 40);
        for (i, value) in values.iter().enumerate() {
            let key = format!("k{i}");
            builder.push(
                1_000 + i as i64,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                &[("h", Some(b"v"))],
            );
        }
        builder.build().unwrap().to_vec()
    }

    #[test]
    fn batches_in_another_codec_are_rewritten_with_the_same_records_and_producer() {
        let checks = ProduceChecks::new(1 << 20);
        let mut validator = RecordValidator::new();
        let mut buffer = produced(Compression::Gzip, &["a", "b", "c"]);
        buffer.extend(produced(Compression::Lz4, &["d"]));
        let rewritten = recompress(&mut validator, &buffer, Compression::Lz4, &checks)
            .unwrap()
            .expect("the gzip batch is rewritten");
        let split: Vec<_> = batch::batches(&rewritten).map(|b| b.unwrap()).collect();
        assert_eq!(split.len(), 2);
        for (header, bytes) in &split {
            assert_eq!(header.compression().unwrap(), Compression::Lz4);
            assert_eq!(
                (
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence
                ),
                (7, 2, 40)
            );
            validator.validate_produced(bytes, &checks).unwrap();
        }
        let before: Vec<_> = batch::batches(&buffer)
            .flat_map(|b| batch::decode_records(b.unwrap().1).unwrap())
            .collect();
        let after: Vec<_> = split
            .iter()
            .flat_map(|(_, bytes)| batch::decode_records(bytes).unwrap())
            .collect();
        assert_eq!(before, after);
        // Already in the codec: nothing to do, no copy.
        assert_eq!(
            recompress(&mut validator, &rewritten, Compression::Lz4, &checks).unwrap(),
            None
        );
        // A damaged batch is refused, as an append refuses it.
        let mut damaged = produced(Compression::None, &["x"]);
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert!(recompress(&mut validator, &damaged, Compression::Zstd, &checks).is_err());
    }
}
