//! Which partition of `__consumer_offsets` holds a group, and so which broker coordinates
//! it. Kafka's function, so a group lands on the same partition number as in Kafka:
//! `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`, where `hashCode` is
//! Java's `String.hashCode` (`s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units, in
//! wrapping 32-bit arithmetic) and `Utils.abs` maps `i32::MIN` to 0. The function is fixed
//! by that definition, not by a library, so it stays the same across versions.

/// The internal topic of committed offsets and group metadata.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's default `offsets.topic.num.partitions`.
pub const CONSUMER_OFFSETS_PARTITIONS_DEFAULT: u32 = 50;

/// Java's `String.hashCode`.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The partition of `__consumer_offsets` (of `partitions` partitions) that holds `group_id`.
/// `partitions` of 0 is treated as 1.
pub fn offsets_partition_for(group_id: &str, partitions: u32) -> u32 {
    let hash = java_string_hash(group_id);
    // Kafka's `Utils.abs`: i32::MIN has no positive counterpart and maps to 0.
    let positive = if hash == i32::MIN {
        0
    } else {
        hash.unsigned_abs()
    };
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_string_hash_matches_java() {
        // Values of "…".hashCode() in Java.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Beyond the basic plane Java hashes the two UTF-16 surrogates.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn group_partition_is_abs_hash_modulo_partitions() {
        assert_eq!(offsets_partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(offsets_partition_for("polygenelubricants", 50), 0);
        // "Aa" and "BB" collide in Java, so they share a coordinator there and here.
        assert_eq!(
            offsets_partition_for("Aa", 50),
            offsets_partition_for("BB", 50)
        );
        assert_eq!(offsets_partition_for("any", 0), 0);
    }

    #[test]
    fn negative_hashes_use_their_absolute_value() {
        let group = "consumer-group-with-a-long-name";
        let hash = java_string_hash(group);
        assert!(hash < 0, "pick a group whose hash is negative, got {hash}");
        assert_eq!(offsets_partition_for(group, 50), hash.unsigned_abs() % 50);
    }
}
