//! When the executor takes a snapshot, and when a stored one may stand in for the events.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::stream::StoredSnapshot;

/// A snapshot is written with the append that takes an aggregate this many events past the
/// last snapshot the writer knows of, so a cold load reads at most about this many events.
/// It costs one more statement in that append's transaction, once per this many events.
pub const SNAPSHOT_INTERVAL: u64 = 100;

/// Bump when an aggregate's `apply` changes what a state means without changing its shape
/// (a corrected fold, say): every stored snapshot is then ignored and rebuilt. A change of
/// shape needs no bump, because [`restore`] refuses what does not round-trip.
pub const SNAPSHOT_FORMAT: i32 = 1;

/// Whether an append that reaches `new_version` should carry a snapshot, given the version
/// of the latest snapshot known to be stored (0 for none, or none usable).
pub fn due(snapshot_version: u64, new_version: u64) -> bool {
    new_version >= snapshot_version.saturating_add(SNAPSHOT_INTERVAL)
}

/// The state a stored snapshot holds, if it has this format and decodes to exactly what is
/// stored: encoding the decoded state again must give the same JSON. Serde alone would take
/// a snapshot from before a field was added (an absent `Option` decodes as `None`) or
/// removed (unknown keys are skipped) and hand back a state the events never produced.
pub fn restore<A: Serialize + DeserializeOwned>(stored: &StoredSnapshot) -> Option<A> {
    if stored.format != SNAPSHOT_FORMAT {
        return None;
    }
    let payload: Value = serde_json::from_str(&stored.payload).ok()?;
    let state = A::deserialize(&payload).ok()?;
    let again: Value = serde_json::to_value(&state).ok()?;
    (again == payload).then_some(state)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Now {
        count: u32,
        note: Option<String>,
    }

    fn stored(format: i32, payload: Value) -> StoredSnapshot {
        StoredSnapshot {
            last_sequence: 100,
            last_position: 4711,
            format,
            payload: payload.to_string(),
        }
    }

    #[test]
    fn due_every_interval_past_the_last_known_snapshot() {
        assert!(!due(0, 1));
        assert!(!due(0, SNAPSHOT_INTERVAL - 1));
        assert!(due(0, SNAPSHOT_INTERVAL));
        // A multi-event append that jumps past the mark still takes one.
        assert!(due(0, SNAPSHOT_INTERVAL + 3));
        assert!(!due(SNAPSHOT_INTERVAL + 3, 2 * SNAPSHOT_INTERVAL));
        assert!(due(SNAPSHOT_INTERVAL + 3, 2 * SNAPSHOT_INTERVAL + 3));
        // A long history loaded without a usable snapshot gets one with its next append.
        assert!(due(0, 10_000));
    }

    #[test]
    fn a_snapshot_that_round_trips_is_restored() {
        let payload = json!({"count": 3, "note": null});
        assert_eq!(
            restore::<Now>(&stored(SNAPSHOT_FORMAT, payload)),
            Some(Now {
                count: 3,
                note: None
            })
        );
    }

    #[test]
    fn a_snapshot_that_does_not_decode_is_refused() {
        assert_eq!(
            restore::<Now>(&stored(SNAPSHOT_FORMAT, json!({"count": "three"}))),
            None
        );
        assert_eq!(
            restore::<Now>(&stored(SNAPSHOT_FORMAT, json!("garbage"))),
            None
        );
        let not_json = StoredSnapshot {
            payload: "{\"count\": 3, \"no".into(),
            ..stored(SNAPSHOT_FORMAT, Value::Null)
        };
        assert_eq!(restore::<Now>(&not_json), None);
    }

    #[test]
    fn a_snapshot_of_an_older_shape_is_refused_though_serde_would_take_it() {
        // Taken before `note` existed: serde would decode it with `note: None`.
        let before_the_field = json!({"count": 3});
        assert!(serde_json::from_value::<Now>(before_the_field.clone()).is_ok());
        assert_eq!(
            restore::<Now>(&stored(SNAPSHOT_FORMAT, before_the_field)),
            None
        );
        // Taken while a since-removed field existed: serde would skip it.
        let with_a_removed_field = json!({"count": 3, "note": null, "colour": "red"});
        assert_eq!(
            restore::<Now>(&stored(SNAPSHOT_FORMAT, with_a_removed_field)),
            None
        );
    }

    #[test]
    fn a_snapshot_of_another_format_is_refused() {
        let payload = json!({"count": 3, "note": null});
        assert_eq!(restore::<Now>(&stored(SNAPSHOT_FORMAT + 1, payload)), None);
    }
}
