//! Who is using the panel, as extractors: `Reader` for pages, `WriteForm` for every form
//! that changes something (an admin, a same-origin request, the session's form token), and
//! the session cookie itself.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, HeaderValue, Uri};
use flowlytix_aggregates::Role;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::PanelError;
use crate::app::SharedApp;
use crate::auth::browser_sessions::BrowserSession;
use crate::http::client_origin::ClientOrigin;

/// The cookie's name over HTTPS: the `__Host-` prefix makes the browser refuse it unless it
/// is `Secure`, has `Path=/` and no `Domain`, so no sibling host can plant one.
const SECURE_COOKIE: &str = "__Host-flowlytix_session";
/// Over plain HTTP (development on localhost) the prefix would be refused by the browser.
const PLAIN_COOKIE: &str = "flowlytix_session";

/// Whether the browser reached us over HTTPS: the request's scheme, or what a trusted
/// proxy in front says (`X-Forwarded-Proto`, believed only from `TRUSTED_PROXIES`, as
/// resolved by `client_origin`).
pub fn is_https(uri: &Uri, extensions: &Extensions) -> bool {
    uri.scheme_str() == Some("https")
        || extensions
            .get::<ClientOrigin>()
            .is_some_and(|origin| origin.https)
}

fn cookie_name(https: bool) -> &'static str {
    if https {
        SECURE_COOKIE
    } else {
        PLAIN_COOKIE
    }
}

/// The `Set-Cookie` value that starts a session in this browser.
pub fn session_cookie(value: &str, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict{secure}",
        cookie_name(https)
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The `Set-Cookie` value that makes the browser forget its session cookie.
pub fn cleared_cookie(https: bool) -> HeaderValue {
    session_cookie("", https)
        .to_str()
        .map(|c| format!("{c}; Max-Age=0"))
        .ok()
        .and_then(|c| HeaderValue::from_str(&c).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

async fn session_of(parts: &Parts, app: &SharedApp) -> Result<BrowserSession, PanelError> {
    let name = cookie_name(is_https(&parts.uri, &parts.extensions));
    let Some(token) = cookie_value(&parts.headers, name) else {
        return Err(PanelError::SignIn);
    };
    // A cookie longer than any id we issue is not ours: no lookup.
    if token.len() > 128 {
        return Err(PanelError::SignIn);
    }
    app.browser_sessions
        .find(token)
        .await?
        .ok_or(PanelError::SignIn)
}

/// Any signed-in panel user, admin or auditor: for pages that only read.
pub struct Reader(pub BrowserSession);

impl FromRequestParts<SharedApp> for Reader {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, PanelError> {
        session_of(parts, app).await.map(Self)
    }
}

/// A signed-in admin (not an auditor) viewing a page that leads to a write (the new
/// subscription form, a confirmation step).
pub struct Writer(pub BrowserSession);

impl FromRequestParts<SharedApp> for Writer {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, app: &SharedApp) -> Result<Self, PanelError> {
        let session = session_of(parts, app).await?;
        require_admin(&session)?;
        Ok(Self(session))
    }
}

fn require_admin(session: &BrowserSession) -> Result<(), PanelError> {
    if session.admin.role == Role::Admin {
        Ok(())
    } else {
        Err(PanelError::Forbidden(
            "Auditors may only read: this action needs the admin role.".into(),
        ))
    }
}

/// True unless the browser says the request comes from another site. `Sec-Fetch-Site`
/// first (every current browser sends it), else `Origin` against `Host`; a request with
/// neither is no browser's cross-site form post, and the form token still guards it.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return true;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match (authority, text(header::HOST.as_str())) {
        (Some(authority), Some(host)) => authority.eq_ignore_ascii_case(host),
        _ => false,
    }
}

#[derive(Deserialize)]
struct FormToken {
    #[serde(default)]
    csrf: String,
}

/// A form that changes something: posted from this site, by a signed-in session whose form
/// token it carries. `fields` are the form's other fields.
pub struct SessionForm<T> {
    pub session: BrowserSession,
    pub fields: T,
}

impl<T: DeserializeOwned> FromRequest<SharedApp> for SessionForm<T> {
    type Rejection = PanelError;

    async fn from_request(request: Request, app: &SharedApp) -> Result<Self, PanelError> {
        let (mut parts, body) = request.into_parts();
        if !same_origin(&parts.headers) {
            return Err(PanelError::Forbidden(
                "This form was sent from another site.".into(),
            ));
        }
        let session = Reader::from_request_parts(&mut parts, app).await?.0;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(|_| PanelError::BadRequest("The form could not be read.".into()))?;
        let token: FormToken = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| PanelError::BadRequest("The form could not be read.".into()))?;
        if !session.accepts_form_token(&token.csrf) {
            return Err(PanelError::Forbidden(
                "This form has expired or did not come from this session: reload the page and try again.".into(),
            ));
        }
        let fields = crate::http::extract::form_fields(&bytes).map_err(PanelError::Api)?;
        Ok(Self { session, fields })
    }
}

/// A [`SessionForm`] from an admin: every panel write but signing out.
pub struct WriteForm<T> {
    pub session: BrowserSession,
    pub fields: T,
}

impl<T: DeserializeOwned> FromRequest<SharedApp> for WriteForm<T> {
    type Rejection = PanelError;

    async fn from_request(request: Request, app: &SharedApp) -> Result<Self, PanelError> {
        let SessionForm { session, fields } = SessionForm::from_request(request, app).await?;
        require_admin(&session)?;
        Ok(Self { session, fields })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_same_origin_post_is_accepted() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://localhost:8000"),
            ("host", "localhost:8000")
        ])));
        assert!(same_origin(&headers(&[])));
    }

    #[test]
    fn a_cross_site_post_is_refused() {
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "localhost:8000")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "null"),
            ("host", "localhost:8000")
        ])));
    }

    #[test]
    fn the_cookie_is_host_prefixed_and_secure_over_https_only() {
        let secure = session_cookie("abc", true);
        assert_eq!(
            secure,
            "__Host-flowlytix_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        let plain = session_cookie("abc", false);
        assert_eq!(
            plain,
            "flowlytix_session=abc; Path=/; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; flowlytix_session=tok; b=2")]);
        assert_eq!(cookie_value(&map, "flowlytix_session"), Some("tok"));
        assert_eq!(cookie_value(&map, "__Host-flowlytix_session"), None);
    }
}
