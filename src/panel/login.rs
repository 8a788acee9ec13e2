//! `/admin/login` and `/admin/logout`: sign-in through the auth layer's own operation (the
//! JSON API's rules: argon2id, disabled admins refused, throttling), then a browser session
//! with a new id; sign-out ends it on the server.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::error::PanelError;
use super::layout::Layout;
use super::session::{cleared_cookie, is_https, same_origin, session_cookie, Reader, SessionForm};
use crate::app::SharedApp;
use crate::auth::AuthError;

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
    request: Request,
) -> Result<Response, PanelError> {
    // No session yet, so no form token: the origin check is what stops a forged sign-in.
    if !same_origin(&headers) {
        return Err(PanelError::Forbidden(
            "This form was sent from another site.".into(),
        ));
    }
    let Form(Credentials { email, password }) = Form::from_request(request, &app)
        .await
        .map_err(|_| PanelError::BadRequest("The form could not be read.".into()))?;
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
        session_cookie(session.cookie_value(), is_https(&uri, &headers)),
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
    headers: HeaderMap,
    form: SessionForm<NoFields>,
) -> Result<Response, PanelError> {
    app.admin_auth
        .sessions()
        .revoke(form.session.admin.session_id, "logout")
        .await?;
    app.browser_sessions.end(&form.session).await?;
    let mut response = Redirect::to("/admin/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cleared_cookie(is_https(&uri, &headers)));
    Ok(response)
}
