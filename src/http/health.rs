//! `GET /health`: is the server able to serve, and what does it depend on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::SharedApp;

pub fn router() -> OpenApiRouter<SharedApp> {
    OpenApiRouter::new().routes(routes!(health))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    pub version: String,
    /// `ok` or `unavailable`.
    pub database: &'static str,
}

/// Health of the server and its database. 503 when the database does not answer.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(app): State<SharedApp>) -> (StatusCode, Json<Health>) {
    let database_ok = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("select 1").fetch_one(&app.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if database_ok { "ok" } else { "unavailable" };
    (
        status,
        Json(Health {
            status: word,
            version: app.config.version.clone(),
            database: word,
        }),
    )
}
