//! API documentation served from the binary: `/openapi.json`, Swagger UI at `/docs` and
//! ReDoc at `/redoc`. Nothing is fetched from the internet: Swagger UI is vendored by
//! utoipa-swagger-ui, ReDoc's script is vendored under `assets/redoc/`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDocument;
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use serde_json::Value;

use crate::app::SharedApp;

mod complete;
pub use complete::complete;

#[derive(OpenApi)]
#[openapi(
    info(title = "Flowlytix Subscription Server", description = "Subscriptions, license keys, device activations and signed license tokens."),
    modifiers(&BearerAuth),
    tags(
        (name = "licensing", description = "Client apps: activate, validate, refresh, deactivate"),
        (name = "auth", description = "Admin sign-in"),
        (name = "subscriptions", description = "Admin: subscriptions and their history"),
        (name = "devices", description = "Admin: device activations"),
        (name = "analytics", description = "Admin: counts now and per day"),
        (name = "events", description = "Auditors: the global event feed"),
        (name = "webhooks", description = "Admin: signed webhooks fed by the event stream"),
        (name = "catalogue", description = "Admin: products, entitlements and the policies subscriptions follow"),
        (name = "ops", description = "Health"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// ReDoc's side menu shows Redocly's logo as `<img src="https://cdn.redoc.ly/...">`, a request
/// to the internet on every page view. It becomes an empty `data:` URL, which fails to load
/// without any request; ReDoc then hides the image (the "API docs by Redocly" link stays).
static REDOC_SCRIPT: LazyLock<String> = LazyLock::new(|| {
    include_str!("../../../assets/redoc/redoc.standalone.js")
        .replace("https://cdn.redoc.ly/redoc/logo-mini.svg", "data:,")
});
/// `{nonce}` is this response's CSP nonce. ReDoc's own `nonce` attribute cannot carry it:
/// browsers blank every `nonce` attribute the page can read (nonce hiding), so the start-up
/// script reads its own nonce (`document.currentScript.nonce` stays readable) and hands it
/// to ReDoc, which puts it on the `<style>` elements it writes.
const REDOC_PAGE: &str = r#"<!DOCTYPE html>
<html>
  <head>
    <title>Flowlytix Subscription Server API</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <div id="redoc" data-spec-url="/openapi.json"></div>
    <script src="/redoc/redoc.standalone.js"></script>
    <script src="/redoc/start.js" nonce="{nonce}"></script>
  </body>
</html>"#;
const REDOC_START: &str = r#"(function () {
  var container = document.getElementById("redoc");
  Redoc.init(container.dataset.specUrl, { nonce: document.currentScript.nonce }, container);
})();
"#;

/// The ReDoc page with a fresh nonce in its page and its policy, so that only the styles
/// ReDoc itself writes are applied (rather than `style-src 'unsafe-inline'`).
async fn redoc_page() -> impl IntoResponse {
    let nonce = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        crate::crypto::random_bytes::<16>(),
    );
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            crate::http::security_headers::redoc_policy(&nonce),
        )],
        Html(REDOC_PAGE.replace("{nonce}", &nonce)),
    )
}

pub fn router(openapi: Value) -> Router<SharedApp> {
    Router::new()
        // No online validator: Swagger UI's default badge sends the document's URL to
        // validator.swagger.io whenever the server is not reached as localhost.
        .merge(
            SwaggerUi::new("/docs")
                .external_url_unchecked("/openapi.json", openapi)
                .config(SwaggerConfig::default().validator_url("none")),
        )
        .route("/redoc", get(redoc_page))
        .route(
            "/redoc/start.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/javascript")],
                    REDOC_START,
                )
            }),
        )
        .route(
            "/redoc/redoc.standalone.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "application/javascript"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    REDOC_SCRIPT.as_str(),
                )
                    .into_response()
            }),
        )
}
