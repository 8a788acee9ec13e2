use std::collections::HashMap;
use std::sync::Mutex;

use flowlytix_eventstore::Db;
use flowlytix_projections::{
    park, project_batch, EventRecord, Outcome, ProjectionError, Projector,
};

use super::{BusError, EventBus, PublishFuture};
use crate::monitoring::record;

/// Tries after which an event that fails on its own is parked (`dead_letters`).
const PARK_AFTER: u32 = 5;

/// The bus of a single instance without NATS: publishing a batch is projecting it, in one
/// transaction for all projectors. The publisher calls this in commit order, so events never
/// arrive out of order.
pub struct InProcessBus {
    db: Db,
    projectors: Vec<Box<dyn Projector>>,
    /// Failed tries of events that failed on their own, by message id.
    failures: Mutex<HashMap<String, u32>>,
}

impl InProcessBus {
    /// Projects into `projectors` (see `flowlytix_projections::enabled_projectors`).
    pub fn new(db: Db, projectors: Vec<Box<dyn Projector>>) -> Self {
        Self {
            db,
            projectors,
            failures: Mutex::default(),
        }
    }

    async fn project_all(&self, events: &[EventRecord]) -> Result<(), BusError> {
        let mut tx = self.db.begin().await.map_err(ProjectionError::from)?;
        let mut results = Vec::with_capacity(self.projectors.len());
        for projector in &self.projectors {
            let outcomes = match project_batch(tx.conn(), projector.as_ref(), events, None).await {
                Ok(outcomes) => outcomes,
                Err(error) => {
                    record::projection_failed(projector.name());
                    return Err(error.into());
                }
            };
            if let Some(index) = outcomes.iter().position(|o| *o == Outcome::Gap) {
                return Err(BusError::Gap(events[index].message_id()));
            }
            results.push((projector.name(), outcomes));
        }
        tx.commit().await.map_err(ProjectionError::from)?;
        for (projector, outcomes) in results {
            record::projected(projector, events, &outcomes);
        }
        Ok(())
    }

    /// One event, projector by projector; after `PARK_AFTER` failed tries it is parked so
    /// that the events behind it flow.
    async fn project_alone(&self, event: &EventRecord) -> Result<(), BusError> {
        for projector in &self.projectors {
            let tried = async {
                let mut tx = self.db.begin().await?;
                let outcomes = project_batch(
                    tx.conn(),
                    projector.as_ref(),
                    std::slice::from_ref(event),
                    None,
                )
                .await?;
                tx.commit().await?;
                Ok::<_, ProjectionError>(outcomes)
            }
            .await;
            let error = match tried {
                Ok(outcomes) if outcomes.contains(&Outcome::Gap) => {
                    return Err(BusError::Gap(event.message_id()))
                }
                Ok(outcomes) => {
                    record::projected(projector.name(), std::slice::from_ref(event), &outcomes);
                    continue;
                }
                Err(error) => {
                    record::projection_failed(projector.name());
                    error
                }
            };
            let tries = {
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                let tries = failures.entry(event.message_id()).or_default();
                *tries += 1;
                *tries
            };
            if tries < PARK_AFTER {
                return Err(error.into());
            }
            tracing::error!(projector = projector.name(), event = %event.message_id(), %error, "event parked in dead_letters");
            let mut tx = self.db.begin().await.map_err(ProjectionError::from)?;
            park(tx.conn(), projector.as_ref(), event, &error.to_string()).await?;
            tx.commit().await.map_err(ProjectionError::from)?;
            record::event_parked(projector.name());
        }
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&event.message_id());
        }
        Ok(())
    }
}

impl EventBus for InProcessBus {
    fn publish<'a>(&'a self, events: &'a [EventRecord]) -> PublishFuture<'a> {
        Box::pin(async move {
            // Open until the events are projected: publishing is projecting here.
            let spans: Vec<_> = events
                .iter()
                .map(|event| {
                    let publish = super::jetstream::publish_span(event);
                    let project = if crate::telemetry::traces::exporting() {
                        tracing::info_span!(parent: &publish, "project", projector = "all", event = %event.message_id())
                    } else {
                        tracing::Span::none()
                    };
                    (publish, project)
                })
                .collect();
            let _spans = spans;
            match self.project_all(events).await {
                Ok(()) => Ok(()),
                // One bad event must not hold the batch back for ever: one at a time.
                Err(BusError::Projection(error)) => {
                    tracing::warn!(events = events.len(), %error, "projecting a batch failed; one event at a time");
                    for event in events {
                        self.project_alone(event).await?;
                    }
                    Ok(())
                }
                Err(other) => Err(other),
            }
        })
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}
