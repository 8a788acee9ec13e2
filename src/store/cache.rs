//! Aggregates held in memory between commands, so that a command costs the same whatever
//! the length of the aggregate's history.
//!
//! An entry may be stale (another instance may have appended since), never wrong: every
//! entry is exactly the fold of the aggregate's events up to its version, because entries
//! come only from loads and from appends the store accepted. Staleness is caught by the
//! store: an append decided on a stale entry takes a sequence that is already taken.

use std::sync::Arc;

use cqrs_es::Aggregate;
use moka::ops::compute::Op;

use flowlytix_eventstore::stream::StoredEvent;
use flowlytix_eventstore::StoreError;

/// An aggregate folded up to its latest known event.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub aggregate: A,
    /// The sequence of its last event; 0 when it has none.
    pub version: u64,
    /// The global position of that event; 0 when it has none.
    pub position: i64,
    /// The version of the latest usable snapshot known to be stored; 0 for none.
    pub snapshot_version: u64,
}

impl<A: Aggregate> Loaded<A> {
    pub fn empty() -> Self {
        Self {
            aggregate: A::default(),
            version: 0,
            position: 0,
            snapshot_version: 0,
        }
    }

    /// Applies the events that follow this version. A gap means the state and the log
    /// disagree, which must not be papered over.
    pub fn fold(
        &mut self,
        aggregate_id: &str,
        events: Vec<StoredEvent<A::Event>>,
    ) -> Result<(), StoreError> {
        for event in events {
            if event.sequence != self.version + 1 {
                return Err(StoreError::Gap {
                    aggregate_id: aggregate_id.to_owned(),
                    version: self.version,
                    found: event.sequence,
                });
            }
            self.aggregate.apply(event.payload);
            self.version = event.sequence;
            self.position = event.position;
        }
        Ok(())
    }
}

/// A bounded map from aggregate id to its latest loaded state. moka evicts by a
/// frequency-aware policy (TinyLFU), so one scan over many aggregates does not push out the
/// busy ones.
pub struct AggregateCache<A> {
    entries: moka::sync::Cache<String, Arc<Loaded<A>>>,
}

impl<A: Clone + Send + Sync + 'static> AggregateCache<A> {
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::sync::Cache::new(capacity),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Loaded<A>>> {
        self.entries.get(id)
    }

    /// Keeps `loaded` unless a newer version is held already: a read that raced a command
    /// must not put an older state back. Aggregates with no events are not kept, so probes
    /// for unknown ids cannot push real entries out.
    pub fn remember(&self, id: &str, loaded: Arc<Loaded<A>>) {
        if loaded.version == 0 {
            return;
        }
        self.entries
            .entry_by_ref(id)
            .and_compute_with(|held| match held {
                Some(held) if held.value().version >= loaded.version => Op::Nop,
                _ => Op::Put(loaded),
            });
    }

    pub fn forget(&self, id: &str) {
        self.entries.invalidate(id);
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::event_sink::EventSink;
    use cqrs_es::DomainEvent;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    struct Tally(Vec<u32>);

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Counted(u32);

    impl DomainEvent for Counted {
        fn event_type(&self) -> String {
            "Counted".into()
        }
        fn event_version(&self) -> String {
            "1".into()
        }
    }

    impl Aggregate for Tally {
        const TYPE: &'static str = "Tally";
        type Command = ();
        type Event = Counted;
        type Error = std::convert::Infallible;
        type Services = ();

        async fn handle(&mut self, _: (), _: &(), _: &EventSink<Self>) -> Result<(), Self::Error> {
            Ok(())
        }

        fn apply(&mut self, event: Counted) {
            self.0.push(event.0);
        }
    }

    fn event(sequence: u64) -> StoredEvent<Counted> {
        StoredEvent {
            sequence,
            position: 1000 + sequence as i64,
            payload: Counted(sequence as u32),
        }
    }

    fn at(version: u64) -> Arc<Loaded<Tally>> {
        let mut loaded = Loaded::empty();
        loaded
            .fold("t", (1..=version).map(event).collect())
            .unwrap();
        Arc::new(loaded)
    }

    #[test]
    fn folding_applies_consecutive_events_and_keeps_the_last_position() {
        let mut loaded = Loaded::<Tally>::empty();
        loaded
            .fold("t", vec![event(1), event(2), event(3)])
            .unwrap();
        assert_eq!(loaded.aggregate, Tally(vec![1, 2, 3]));
        assert_eq!((loaded.version, loaded.position), (3, 1003));
        loaded.fold("t", vec![]).unwrap();
        assert_eq!(loaded.version, 3);
    }

    #[test]
    fn folding_refuses_a_gap_or_a_repeat() {
        let mut loaded = Loaded::<Tally>::empty();
        loaded.fold("t", vec![event(1)]).unwrap();
        let gap = loaded.fold("t", vec![event(3)]).unwrap_err();
        assert!(
            matches!(
                gap,
                StoreError::Gap {
                    version: 1,
                    found: 3,
                    ..
                }
            ),
            "{gap}"
        );
        assert!(loaded.fold("t", vec![event(1)]).is_err());
        assert_eq!(loaded.aggregate, Tally(vec![1]));
    }

    #[test]
    fn the_cache_never_goes_back_to_an_older_version() {
        let cache = AggregateCache::<Tally>::new(10);
        cache.remember("t", at(5));
        cache.remember("t", at(3));
        assert_eq!(cache.get("t").unwrap().version, 5);
        cache.remember("t", at(6));
        assert_eq!(cache.get("t").unwrap().version, 6);
        cache.forget("t");
        assert!(cache.get("t").is_none());
        cache.remember("t", at(2));
        assert_eq!(cache.get("t").unwrap().version, 2);
    }

    #[test]
    fn aggregates_without_events_are_not_kept() {
        let cache = AggregateCache::<Tally>::new(10);
        cache.remember("nobody", at(0));
        assert!(cache.get("nobody").is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = AggregateCache::<Tally>::new(10);
        for i in 0..1_000 {
            cache.remember(&format!("t{i}"), at(1));
        }
        cache.entries.run_pending_tasks();
        assert!(cache.entries.entry_count() <= 10);
    }
}
