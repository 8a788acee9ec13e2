//! Security headers on every response. Each is set only when the response does not carry
//! it already, so a page with a stricter policy of its own (the admin panel, ReDoc's
//! per-response nonce) keeps it.

use axum::extract::Request;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::client_origin::ClientOrigin;

/// JSON answers load nothing and belong in no frame.
pub const API_POLICY: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Swagger UI (vendored by utoipa-swagger-ui): its own scripts and stylesheets, the icons
/// its stylesheet inlines as `data:` images, and the document it fetches. The one inline
/// style it writes, the `<style>` of its logo's SVG, is allowed by its hash.
pub const SWAGGER_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// ReDoc: its scripts, the stylesheets styled-components writes into `<style>` elements
/// (allowed by this response's nonce, which ReDoc puts on each of them), two it writes
/// before it knows the nonce (perfect-scrollbar's fixed stylesheet, and styled-components'
/// first sheet while still empty) by their hashes, and the document it fetches. Checked in
/// a real browser by the `docs_pages_render_under_their_policy` test: a newer vendored
/// ReDoc may need these hashes again.
pub fn redoc_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}' \
         'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc=' \
         'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; \
         img-src 'self' data:; connect-src 'self'; worker-src blob:; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

/// A year, subdomains included: once a browser has seen HTTPS here it never tries HTTP.
const HSTS: &str = "max-age=31536000; includeSubDomains";

pub async fn add_security_headers(request: Request, next: Next) -> Response {
    let https = request
        .extensions()
        .get::<ClientOrigin>()
        .is_some_and(|origin| origin.https);
    let policy = if request.uri().path().starts_with("/docs") {
        SWAGGER_POLICY
    } else {
        API_POLICY
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    set_if_absent(headers, X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_if_absent(headers, X_FRAME_OPTIONS, "DENY");
    set_if_absent(headers, REFERRER_POLICY, "no-referrer");
    set_if_absent(headers, CONTENT_SECURITY_POLICY, policy);
    // Only over HTTPS: sent over plain HTTP it would be ignored at best, and would pin a
    // browser to HTTPS on a host that may not offer it.
    if https {
        set_if_absent(headers, STRICT_TRANSPORT_SECURITY, HSTS);
    }
    response
}

fn set_if_absent(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    if !headers.contains_key(&name) {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    /// The admin panel sets a stricter policy of its own on its pages: it is kept.
    #[tokio::test]
    async fn a_policy_the_page_set_itself_is_kept_and_the_rest_are_added() {
        let own = "default-src 'none'; style-src 'self'; frame-ancestors 'none'";
        let router: Router = Router::new()
            .route(
                "/admin",
                get(move || async move { ([(CONTENT_SECURITY_POLICY, own)], "panel") }),
            )
            .layer(axum::middleware::from_fn(add_security_headers));
        let request = Request::builder()
            .uri("/admin")
            .body(Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let headers = response.headers();
        assert_eq!(headers[CONTENT_SECURITY_POLICY], own);
        assert_eq!(headers.get_all(CONTENT_SECURITY_POLICY).iter().count(), 1);
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer");
        assert!(!headers.contains_key(STRICT_TRANSPORT_SECURITY));
    }
}
