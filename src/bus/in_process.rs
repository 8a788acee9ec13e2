use flowlytix_projections::Db;
use flowlytix_projections::{
    all_projectors, project, EventRecord, Outcome, ProjectionError, Projector,
};

use super::{BusError, EventBus, PublishFuture};

/// The bus of a single instance without NATS: publishing an event is projecting it. The
/// publisher calls this in commit order, so events never arrive out of order.
pub struct InProcessBus {
    db: Db,
    projectors: Vec<Box<dyn Projector>>,
}

impl InProcessBus {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            projectors: all_projectors(),
        }
    }
}

impl EventBus for InProcessBus {
    fn publish<'a>(&'a self, events: &'a [EventRecord]) -> PublishFuture<'a> {
        Box::pin(async move {
            let mut tx = self.db.begin().await.map_err(ProjectionError::from)?;
            for event in events {
                for projector in &self.projectors {
                    if project(tx.conn(), projector.as_ref(), event, None).await? == Outcome::Gap {
                        return Err(BusError::Gap(event.message_id()));
                    }
                }
            }
            tx.commit().await.map_err(ProjectionError::from)?;
            Ok(())
        })
    }

    fn is_connected(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}
