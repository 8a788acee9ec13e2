//! `/admin/login` and `/admin/logout`: sign-in through the auth layer's own operation (the
//! JSON API's rules: argon2id, disabled admins refused, throttling), then a browser session
//! with a new id; sign-out ends it on the server.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Request, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::PanelError;
use super::layout::Layout;
use super::session::{cleared_cookie, is_https, same_origin, session_cookie, Reader, SessionForm};
use crate::app::SharedApp;
use crate::auth::AuthError;
use crate::http::client_origin::ClientOrigin;
use crate::http::extract::form_fields;

#[derive(Template, WebTemplate)]
#[template(path = "panel/login.html")]
pub struct LoginPage {
    layout: Layout,
    email: String,
    error: Option<String>,
}

/// The sign-in form; a browser already signed in goes on to the dashboard.
pub async fn page(signed_in: Result<Reader, PanelError>) -> Response {
    if signed_in.is_ok() {
        return Redirect::to("/admin").into_response();
    }
    LoginPage {
        layout: Layout::bare(),
        email: String::new(),
        error: None,
    }
    .into_response()
}

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn refused(email: String, message: &str, status: StatusCode) -> Response {
    let page = LoginPage {
        layout: Layout::bare(),
        email,
        error: Some(message.to_owned()),
    };
    (status, page).into_response()
}

pub async fn sign_in(
    State(app): State<SharedApp>,
    uri: Uri,
    headers: HeaderMap,
    Extension(origin): Extension<ClientOrigin>,
    request: Request,
) -> Result<Response, PanelError> {
    let https = origin.https || uri.scheme_str() == Some("https");
    // No session yet, so no form token: the origin check is what stops a forged sign-in.
    if !same_origin(&headers) {
        return Err(PanelError::Forbidden(
            "This form was sent from another site.".into(),
        ));
    }
    let bytes = Bytes::from_request(request, &app)
        .await
        .map_err(|_| PanelError::BadRequest("The form could not be read.".into()))?;
    let Credentials { email, password } = form_fields(&bytes).map_err(PanelError::Api)?;
    if password.len() > 1024 || email.len() > 254 {
        return Ok(refused(
            email,
            "Invalid email or password.",
            StatusCode::UNAUTHORIZED,
        ));
    }
    let pair = match app.admin_auth.login(&app.admins, &email, &password).await {
        Ok(pair) => pair,
        Err(AuthError::InvalidCredentials) => {
            return Ok(refused(
                email,
                "Invalid email or password.",
                StatusCode::UNAUTHORIZED,
            ))
        }
        Err(AuthError::Throttled { wait }) => {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let message = format!(
                "Too many sign-in attempts for this account: try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            );
            let mut response = refused(email, &message, StatusCode::TOO_MANY_REQUESTS);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
            return Ok(response);
        }
        Err(error) => return Err(PanelError::Api(auth_failure(error))),
    };
    // The sign-in opened an admin session; the browser session rides on it.
    let admin = app
        .admin_auth
        .authenticate(&pair.access_token)
        .await
        .map_err(|e| PanelError::Api(auth_failure(e)))?;
    let session = app.browser_sessions.start(admin).await?;
    let mut response = Redirect::to("/admin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(session.cookie_value(), https),
    );
    Ok(response)
}

fn auth_failure(error: AuthError) -> crate::http::error::ApiError {
    crate::http::error::ApiError::unavailable(crate::telemetry::error_chain(&error))
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn sign_out(
    State(app): State<SharedApp>,
    uri: Uri,
    extensions: Extensions,
    form: SessionForm<NoFields>,
) -> Result<Response, PanelError> {
    app.admin_auth
        .sessions()
        .revoke(form.session.admin.session_id, "logout")
        .await?;
    app.browser_sessions.end(&form.session).await?;
    let mut response = Redirect::to("/admin/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cleared_cookie(is_https(&uri, &extensions)),
    );
    Ok(response)
}
