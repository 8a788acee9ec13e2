//! `/admin/events`: the global event log in commit order, filtered by aggregate, event
//! type and actor, paged by cursor.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::actors::{self, ActorShown};
use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::Reader;
use crate::app::SharedApp;
use crate::read::feed::{self, FeedError, FeedQuery};

const PER_PAGE: i64 = 50;

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    #[serde(default)]
    aggregate_type: String,
    #[serde(default)]
    aggregate_id: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    actor: String,
    after: Option<i64>,
}

impl EventsQuery {
    fn after(&self, position: i64) -> String {
        let pairs = [
            ("aggregate_type", self.aggregate_type.clone()),
            ("aggregate_id", self.aggregate_id.clone()),
            ("event_type", self.event_type.clone()),
            ("actor", self.actor.clone()),
            ("after", position.to_string()),
        ];
        let present: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
        serde_urlencoded::to_string(present).unwrap_or_default()
    }
}

pub struct EventItem {
    pub position: i64,
    pub at: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub is_subscription: bool,
    pub event_type: String,
    pub actor: ActorShown,
    pub ip: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/events.html")]
pub struct EventsPage {
    layout: Layout,
    query: EventsQuery,
    items: Vec<EventItem>,
    next: Option<String>,
    first_page: bool,
    error: Option<String>,
}

pub async fn page(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<EventsQuery>,
) -> Result<EventsPage, PanelError> {
    let feed_query = FeedQuery {
        after: query.after,
        aggregate_type: forms::optional(&query.aggregate_type),
        aggregate_id: forms::optional(&query.aggregate_id),
        event_type: forms::optional(&query.event_type),
        limit: Some(PER_PAGE),
        actor: forms::optional(&query.actor),
    };
    let (records, next, error) = match feed::page(&app.db, &feed_query).await {
        Ok((records, next)) => (records, next, None),
        Err(FeedError::UnknownCursor) => (vec![], None, Some("No event at that position.".into())),
        Err(FeedError::Database(error)) => return Err(error.into()),
    };
    let full = records.len() as i64 == PER_PAGE;
    let raw_actors: Vec<String> = records
        .iter()
        .map(|record| actor_of(&record.metadata))
        .collect();
    let shown = actors::shown(&app.db, &raw_actors).await?;
    let items = records
        .into_iter()
        .zip(shown)
        .map(|(record, actor)| {
            let text = |name: &str| {
                record.metadata[name]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            let at = text("occurred_at")
                .parse::<DateTime<Utc>>()
                .unwrap_or(record.recorded_at);
            EventItem {
                position: record.position,
                at: at.format("%Y-%m-%d %H:%M:%S").to_string(),
                is_subscription: record.aggregate_type == "Subscription",
                aggregate_type: record.aggregate_type,
                aggregate_id: record.aggregate_id,
                event_type: record.event_type,
                actor,
                ip: text("ip"),
            }
        })
        .collect();
    // A page that came back short reached the end of the log (for now).
    let next = next.filter(|_| full).map(|position| query.after(position));
    Ok(EventsPage {
        layout: Layout::signed_in(&app, &session, "events").await,
        first_page: query.after.is_none_or(|a| a == 0),
        query,
        items,
        next,
        error,
    })
}

/// The actor an event's metadata names, as recorded.
pub fn actor_of(metadata: &serde_json::Value) -> String {
    metadata["actor"].as_str().unwrap_or_default().to_owned()
}
