//! `GET /api/v1/events`: the global event feed in commit order, for auditors.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use flowlytix_eventstore::EventRecord;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::RequireReader;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;
use crate::app::SharedApp;
use crate::read::feed::{self, FeedError, FeedQuery};

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new().routes(routes!(event_feed))
}

#[derive(Serialize, ToSchema)]
pub struct FeedPage {
    pub items: Vec<EventRecord>,
    /// Pass as `after` for the next page; `null` while the log is empty.
    pub next_after: Option<i64>,
}

/// Every event of every aggregate in commit order, with metadata. Page with `after`.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(FeedQuery), responses((status = 200, body = FeedPage), (status = 400, body = Problem)))]
async fn event_feed(
    State(app): State<SharedApp>,
    RequireReader(_reader): RequireReader,
    ApiQuery(query): ApiQuery<FeedQuery>,
) -> Result<Json<FeedPage>, ApiError> {
    match feed::page(&app.db, &query).await {
        Ok((items, next_after)) => Ok(Json(FeedPage { items, next_after })),
        Err(FeedError::UnknownCursor) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CURSOR",
            "`after` is not the position of an event",
        )),
        Err(FeedError::Database(error)) => Err(error.into()),
    }
}
