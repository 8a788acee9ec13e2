//! The admin panel at `/admin`: server-rendered pages (askama templates under `templates/`)
//! over the same application operations and read models as the JSON API. One module per
//! page; sessions, form tokens and the layout are shared. Every form works without
//! JavaScript (a plain POST answered by a 303 redirect or by the page again with the error
//! next to the form).

mod actions;
mod actors;
mod assets;
mod catalogue;
mod charts;
mod dashboard;
mod detail;
mod devices;
mod entitlements;
mod error;
mod events;
mod export;
mod following;
mod forms;
mod layout;
mod login;
mod new_subscription;
mod policies;
mod policy_detail;
mod product_detail;
mod products;
mod session;
mod subscriptions;
mod webhook_detail;
mod webhooks;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::app::SharedApp;
use crate::http::limits::Limit;

/// Every panel page's policy: no inline script or style anywhere, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// `sign_in_limit` is the JSON sign-in's rate limit: where passwords are guessed, both
/// doors spend one budget.
pub fn router(sign_in_limit: Option<Limit>) -> Router<SharedApp> {
    let sign_in = Router::new().route("/admin/login", get(login::page).post(login::sign_in));
    let sign_in = match sign_in_limit {
        Some(limit) => sign_in.layer(limit),
        None => sign_in,
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/admin") }))
        .route("/admin", get(dashboard::page))
        .route("/admin/", get(|| async { Redirect::to("/admin") }))
        .route("/admin/logout", post(login::sign_out))
        .route("/admin/subscriptions", get(subscriptions::list))
        .route("/admin/subscriptions/export.csv", get(export::export_csv))
        .route(
            "/admin/subscriptions/new",
            get(new_subscription::new_form).post(new_subscription::create),
        )
        .route(
            "/admin/subscriptions/{id}",
            get(detail::page).post(detail::save),
        )
        .route("/admin/subscriptions/{id}/confirm", get(actions::confirm))
        .route(
            "/admin/subscriptions/{id}/actions/{action}",
            post(actions::act),
        )
        .route(
            "/admin/devices/{id}/deactivate",
            post(actions::deactivate_device),
        )
        .route("/admin/devices", get(devices::page))
        .route("/admin/events", get(events::page))
        .route("/admin/webhooks", get(webhooks::list))
        .route(
            "/admin/webhooks/new",
            get(webhooks::new_form).post(webhooks::create),
        )
        .route(
            "/admin/webhooks/{id}",
            get(webhook_detail::page).post(webhook_detail::save),
        )
        .route("/admin/webhooks/{id}/confirm", get(webhook_detail::confirm))
        .route(
            "/admin/webhooks/{id}/actions/{action}",
            post(webhook_detail::act),
        )
        .route(
            "/admin/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            post(webhook_detail::redeliver),
        )
        .route("/admin/products", get(products::list))
        .route(
            "/admin/products/new",
            get(products::new_form).post(products::create),
        )
        .route(
            "/admin/products/{id}",
            get(product_detail::page).post(product_detail::save),
        )
        .route(
            "/admin/products/{id}/delete",
            get(product_detail::confirm_delete).post(product_detail::delete),
        )
        .route(
            "/admin/entitlements",
            get(entitlements::list).post(entitlements::create),
        )
        .route("/admin/entitlements/{id}", post(entitlements::rename))
        .route(
            "/admin/entitlements/{id}/delete",
            get(entitlements::confirm_delete).post(entitlements::delete),
        )
        .route("/admin/policies", get(policies::list))
        .route(
            "/admin/policies/new",
            get(policies::new_form).post(policies::create),
        )
        .route(
            "/admin/policies/{id}",
            get(policy_detail::page).post(policy_detail::save),
        )
        .route(
            "/admin/policies/{id}/{action}",
            get(policy_detail::confirm).post(policy_detail::act),
        )
        .merge(sign_in)
        // Pages may hold what only a signed-in admin may see: never kept by a cache.
        // (Assets set their own, long lifetime.)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .merge(assets::router())
}
