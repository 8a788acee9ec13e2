//! The panel's static files (`assets/panel/`), embedded in the binary and served under
//! content-hashed names: a changed file gets a new URL, so every URL can be cached forever.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::app::SharedApp;

#[derive(RustEmbed)]
#[folder = "assets/panel/"]
struct PanelAssets;

const PREFIX: &str = "/admin/assets/";

/// Hashed name (`panel.1a2b3c4d5e6f.css`) → embedded name (`panel.css`).
static BY_HASHED_NAME: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    PanelAssets::iter()
        .map(|name| (hashed_name(&name), name.into_owned()))
        .collect()
});

fn hashed_name(name: &str) -> String {
    let hash = PanelAssets::get(name)
        .map(|file| file.metadata.sha256_hash())
        .unwrap_or_default();
    let short: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    match name.rsplit_once('.') {
        Some((stem, extension)) => format!("{stem}.{short}.{extension}"),
        None => format!("{name}.{short}"),
    }
}

/// The URL of an embedded file, for templates.
pub fn url(name: &str) -> String {
    format!("{PREFIX}{}", hashed_name(name))
}

pub fn router() -> Router<SharedApp> {
    Router::new().route("/admin/assets/{file}", get(serve))
}

async fn serve(Path(file): Path<String>) -> Response {
    let Some(file) = BY_HASHED_NAME
        .get(&file)
        .and_then(|name| PanelAssets::get(name).map(|f| (name, f)))
    else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let (name, file) = file;
    let content_type = match name.rsplit_once('.').map(|(_, e)| e) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        file.data.into_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hashed_url_that_finds_it() {
        for name in ["panel.css", "panel.js"] {
            let url = url(name);
            let hashed = url.strip_prefix(PREFIX).unwrap_or_default();
            assert_ne!(hashed, name, "the URL carries a hash");
            assert_eq!(BY_HASHED_NAME.get(hashed).map(String::as_str), Some(name));
        }
    }
}
