//! The admin panel over HTTP: sessions, form tokens and origin checks, the auditor's
//! read-only view, escaping, CSV, and the headers every panel page carries.

use chrono::Utc;
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts;
use flowlytix_server::store::EventMetadata;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
pub const AUDITOR_EMAIL: &str = "auditor@flowlytix.test";
pub const AUDITOR_PASSWORD: &str = "auditor-password-123";

/// A browser as far as HTTP goes: one session cookie, redirects not followed.
pub struct Browser {
    client: Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            client: Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.address.clone(),
            cookie: None,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    /// A form post as a browser on this site sends it.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        self.post_with(path, form, &[("sec-fetch-site", "same-origin")])
            .await
    }

    pub async fn post_with(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    pub async fn sign_in(&mut self, email: &str, password: &str) -> Response {
        let response = self
            .post("/admin/login", &[("email", email), ("password", password)])
            .await;
        if let Some(cookie) = response.headers().get(SET_COOKIE) {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap();
            self.cookie = Some(pair.to_owned());
        }
        response
    }

    pub async fn signed_in(app: &TestApp) -> Self {
        let mut browser = Self::new(app);
        let response = browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        browser
    }

    /// A page's HTML, asserting it answered 200.
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// The form token of this session, as the page's forms carry it.
    pub async fn form_token(&self) -> String {
        let html = self.page("/admin").await;
        let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
        html[start..start + 64].to_owned()
    }
}

pub async fn auditor(app: &TestApp) -> Browser {
    accounts::create_admin(
        &app.server.admins,
        AUDITOR_EMAIL,
        AUDITOR_PASSWORD,
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .expect("create the auditor");
    let mut browser = Browser::new(app);
    let response = browser.sign_in(AUDITOR_EMAIL, AUDITOR_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    browser
}

/// The ids of visible inputs and selects that no `<label for=…>` names (`""`: no id).
pub fn unlabelled_controls(html: &str) -> Vec<String> {
    let mut missing = vec![];
    for tag in ["<input", "<select"] {
        for (i, _) in html.match_indices(tag) {
            let element = &html[i..i + html[i..].find('>').unwrap()];
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = element
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("");
            if id.is_empty() || !html.contains(&format!("<label for=\"{id}\"")) {
                missing.push(id.to_owned());
            }
        }
    }
    missing
}

/// ` onclick=`, ` onload=` and the like.
pub fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(i, _)| {
        let rest = &html[i + 3..];
        let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_len > 0 && rest[name_len..].starts_with('=')
    })
}

fn new_subscription_form<'a>(token: &'a str, name: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", token),
        ("customer_email", "panel@example.com"),
        ("customer_name", name),
        ("organization", "Panel Ltd"),
        ("plan", "pro"),
        ("max_devices", "2"),
        ("expires_at", "2030-01-31"),
        ("trial_ends_at", ""),
        ("features", "sync, export"),
    ]
}

fn subscription_id_in(html: &str) -> String {
    let start = html.find("href=\"/admin/subscriptions/").unwrap() + 27;
    html[start..start + 36].to_owned()
}

#[tokio::test]
async fn signing_in_sets_a_strict_session_cookie_and_opens_the_dashboard() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let response = browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/admin");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("flowlytix_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure");
    let html = browser.page("/admin").await;
    assert!(html.contains("<h1>Dashboard</h1>"));
    for link in [
        "Dashboard",
        "Subscriptions",
        "Devices",
        "Events",
        "Sign out",
    ] {
        assert!(
            html.contains(&format!(">{link}<")),
            "the navigation has {link}"
        );
    }
    // The session table holds a hash of the cookie's id, never the id.
    let id = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let stored = app
        .scalar(&format!(
            "select count(*) from panel_sessions where token_hash like '%{id}%'"
        ))
        .await;
    assert_eq!(stored, 0);
    assert_eq!(app.scalar("select count(*) from panel_sessions").await, 1);
}

#[tokio::test]
async fn over_https_the_cookie_is_host_prefixed_and_secure() {
    // HTTPS as a trusted proxy in front reports it.
    let app = crate::helpers::spawn_app_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let browser = Browser::new(&app);
    let https = [
        ("x-forwarded-proto", "https"),
        ("sec-fetch-site", "same-origin"),
    ];
    let response = browser
        .post_with(
            "/admin/login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            &https,
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-flowlytix_session="), "{cookie}");
    assert!(cookie.contains("; Secure"));
    assert!(cookie.contains("Path=/") && !cookie.contains("Domain"));
    // The session is read back from that cookie over HTTPS, and only there.
    let pair = cookie.split(';').next().unwrap();
    let page = |proto: &'static str| {
        app.client
            .get(app.url("/admin"))
            .header("cookie", pair)
            .header("x-forwarded-proto", proto)
            .send()
    };
    let over_https = page("https").await.unwrap();
    assert_eq!(over_https.status(), StatusCode::OK);
    assert!(over_https.url().path() == "/admin");

    // From a peer that is no trusted proxy, the header is anyone's word: ignored.
    let untrusted = spawn_app().await;
    let response = Browser::new(&untrusted)
        .post_with(
            "/admin/login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            &https,
        )
        .await;
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("flowlytix_session=") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_bad_password_shows_an_alert_keeps_the_email_and_starts_no_session() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let response = browser.sign_in(ADMIN_EMAIL, "wrong password").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\""));
    assert!(html.contains("Invalid email or password."));
    assert!(html.contains(&format!("value=\"{ADMIN_EMAIL}\"")));
    assert!(
        !html.contains("wrong password"),
        "the password is never echoed"
    );
    assert_eq!(app.scalar("select count(*) from panel_sessions").await, 0);
}

#[tokio::test]
async fn signed_out_every_panel_page_redirects_to_the_sign_in_page() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let root = browser.get("/").await;
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(root.headers()[LOCATION], "/admin");
    let id = uuid::Uuid::new_v4();
    for path in [
        "/admin".to_owned(),
        "/admin/subscriptions".to_owned(),
        "/admin/subscriptions/new".to_owned(),
        "/admin/subscriptions/export.csv".to_owned(),
        format!("/admin/subscriptions/{id}"),
        "/admin/devices".to_owned(),
        "/admin/events".to_owned(),
    ] {
        let response = browser.get(&path).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(response.headers()[LOCATION], "/admin/login", "{path}");
    }
    // A forged cookie is no session.
    let mut forged = Browser::new(&app);
    forged.cookie = Some("flowlytix_session=not-a-session".into());
    assert_eq!(forged.get("/admin").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_panel_page_has_the_strict_csp_and_is_never_cached() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    // Signed in, the sign-in page moves on to the dashboard; signed out it is a page too.
    let login = browser.get("/admin/login").await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()[LOCATION], "/admin");
    let signed_out = Browser::new(&app).get("/admin/login").await;
    assert_eq!(signed_out.headers()["content-security-policy"], CSP);
    assert_eq!(signed_out.headers()[CACHE_CONTROL], "no-store");
    assert!(unlabelled_controls(&signed_out.text().await.unwrap()).is_empty());
    for path in [
        "/admin".to_owned(),
        "/admin/subscriptions".to_owned(),
        "/admin/subscriptions/new".to_owned(),
        format!("/admin/subscriptions/{id}"),
        format!("/admin/subscriptions/{id}/confirm?action=suspend"),
        "/admin/devices".to_owned(),
        "/admin/events".to_owned(),
    ] {
        let response = browser.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store", "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<h1"), "{path} has an h1");
        // No inline script or style: nothing the CSP would block.
        assert!(!html.contains("style="), "{path} has an inline style");
        assert!(!html.contains("<style"), "{path} has a style element");
        assert!(!html.contains("<script>"), "{path} has an inline script");
        assert!(
            !has_event_handler(&html),
            "{path} has an event handler attribute"
        );
        let unlabelled = unlabelled_controls(&html);
        assert!(
            unlabelled.is_empty(),
            "{path}: no <label for> names {unlabelled:?}"
        );
    }
}

#[tokio::test]
async fn assets_have_hashed_urls_and_are_cached_forever() {
    let app = spawn_app().await;
    let browser = Browser::new(&app);
    let html = browser.page("/admin/login").await;
    let start = html.find("/admin/assets/panel.").unwrap();
    let end = start + html[start..].find('"').unwrap();
    let url = &html[start..end];
    assert!(url.ends_with(".css") && url.len() > "/admin/assets/panel.css".len());
    let response = browser.get(url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    let missing = browser.get("/admin/assets/panel.000000000000.css").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_form_without_the_sessions_token_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let before = app.event_count().await;
    let other = Browser::signed_in(&app).await.form_token().await;
    for token in ["", "0000", other.as_str()] {
        let response = browser
            .post(
                "/admin/subscriptions/new",
                &new_subscription_form(token, "Forged"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "token {token:?}");
    }
    // Signing out is a write too.
    let response = browser.post("/admin/logout", &[("csrf", "")]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.event_count().await, before);
    assert_eq!(browser.get("/admin").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_form_posted_from_another_site_is_refused_even_with_the_token() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let before = app.event_count().await;
    let form = new_subscription_form(&token, "Cross-site");
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.example"),
        ],
    ] {
        let response = browser
            .post_with("/admin/subscriptions/new", &form, &headers)
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    // A sign-in from another site is refused as well (login CSRF).
    let response = Browser::new(&app)
        .post_with(
            "/admin/login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn creating_a_subscription_shows_its_key_once_with_the_admins_metadata() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let response = browser
        .post_with(
            "/admin/subscriptions/new",
            &new_subscription_form(&token, "Panel Customer"),
            &[
                ("sec-fetch-site", "same-origin"),
                ("user-agent", "panel-test-agent"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let html = response.text().await.unwrap();
    let start = html.find("FLX-").unwrap();
    let key = &html[start..start + html[start..].find('<').unwrap()];
    let id = subscription_id_in(&html);
    // The key works, and is never shown again.
    assert_eq!(
        app.activate(key, "panel-device").await.status(),
        StatusCode::CREATED
    );
    let detail = browser.page(&format!("/admin/subscriptions/{id}")).await;
    assert!(!detail.contains(key));
    assert!(detail.contains("<h1>Panel Customer</h1>"));
    assert!(detail.contains(">active<"));
    // The same events and metadata as the JSON API's create.
    let history: Value = app
        .api()
        .admin(
            reqwest::Method::GET,
            &format!("/api/v1/subscriptions/{id}/events"),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = &history["items"][0];
    assert_eq!(created["event_type"], "SubscriptionCreated");
    let admin_id = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(admin_id["access_token"].is_string());
    let metadata = &created["metadata"];
    assert_eq!(metadata["ip"], "127.0.0.1");
    assert_eq!(metadata["user_agent"], "panel-test-agent");
    assert!(!metadata["request_id"].as_str().unwrap().is_empty());
    let actor = metadata["actor"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(actor).is_ok(),
        "the actor is the admin's id: {actor}"
    );
    // The list right after the write shows it (min_position).
    let position = html
        .split("min_position=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let list = browser
        .page(&format!("/admin/subscriptions?min_position={position}"))
        .await;
    assert!(list.contains("panel@example.com"));
}

#[tokio::test]
async fn a_mistake_is_shown_next_to_the_form_which_keeps_what_was_typed() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let before = app.event_count().await;
    let mut form = new_subscription_form(&token, "Kept Name");
    form.retain(|(k, _)| *k != "max_devices");
    form.push(("max_devices", "lots"));
    let response = browser.post("/admin/subscriptions/new", &form).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\""));
    assert!(html.contains("Max devices"));
    assert!(html.contains("value=\"Kept Name\"") && html.contains("value=\"lots\""));
    // The domain's refusal too: a plan that is not a slug.
    let mut form = new_subscription_form(&token, "Kept Name");
    form.retain(|(k, _)| *k != "plan");
    form.push(("plan", "Not A Slug"));
    let response = browser.post("/admin/subscriptions/new", &form).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"Not A Slug\""));
    assert_eq!(app.event_count().await, before);

    // The edit form: a bad instant keeps the typed text, nothing changes.
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/admin/subscriptions/{id}");
    let before = app.event_count().await;
    let response = browser
        .post(
            &path,
            &[
                ("csrf", &token),
                ("version", "2"),
                ("plan", "pro"),
                ("max_devices", "1"),
                ("expires_at", "next tuesday"),
                ("customer_email", "ann@example.com"),
                ("customer_name", "Ann Example"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"next tuesday\""));
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn saving_the_edit_form_changes_the_subscription_and_a_stale_form_is_refused() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    let version = created["version"].to_string();
    let path = format!("/admin/subscriptions/{id}");
    let form = |plan: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("version", version.clone()),
            ("plan", plan.to_owned()),
            ("max_devices", "4".to_owned()),
            ("starts_at", "2026-01-01".to_owned()),
            ("expires_at", "2031-05-01T00:00:00Z".to_owned()),
            ("trial_ends_at", String::new()),
            ("features", "sync".to_owned()),
            ("customer_email", "ann@example.com".to_owned()),
            ("customer_name", "Ann Example".to_owned()),
            ("organization", "Example Ltd".to_owned()),
        ]
    };
    let as_pairs =
        |form: &[(&'static str, String)]| -> Vec<(&'static str, String)> { form.to_vec() };
    let pairs = as_pairs(&form("enterprise"));
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = browser.post(&path, &borrowed).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let now: Value = app
        .admin(reqwest::Method::GET, &format!("/api/v1/subscriptions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["plan"], "enterprise");
    assert_eq!(now["max_devices"], 4);
    assert_eq!(now["features"], json!(["sync"]));
    assert_eq!(now["expires_at"], "2031-05-01T00:00:00Z");
    assert_eq!(now["starts_at"], "2026-01-01T00:00:00Z");
    // The same form again carries the old version: refused, the page says why.
    let pairs = as_pairs(&form("basic"));
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = browser.post(&path, &borrowed).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"basic\""));
}

#[tokio::test]
async fn actions_run_after_their_confirmation_step() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    let status = || async {
        let body: Value = app
            .admin(reqwest::Method::GET, &format!("/api/v1/subscriptions/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["status"].as_str().unwrap_or("gone").to_owned()
    };
    let confirm = browser
        .page(&format!("/admin/subscriptions/{id}/confirm?action=suspend"))
        .await;
    assert!(confirm.contains(">Confirm<"));
    assert_eq!(
        status().await,
        "active",
        "the confirmation page changes nothing"
    );
    let act = |action: &'static str| {
        let path = format!("/admin/subscriptions/{id}/actions/{action}");
        let token = token.clone();
        let browser = &browser;
        async move {
            browser
                .post(&path, &[("csrf", &token), ("reason", "testing")])
                .await
        }
    };
    assert_eq!(act("suspend").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(status().await, "suspended");
    assert_eq!(act("resume").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(status().await, "active");
    let regenerated = act("regenerate-key").await;
    assert_eq!(regenerated.status(), StatusCode::OK);
    let html = regenerated.text().await.unwrap();
    let start = html.find("FLX-").unwrap();
    let key = &html[start..start + html[start..].find('<').unwrap()];
    assert_eq!(
        app.activate(key, "after-regenerate").await.status(),
        StatusCode::CREATED
    );
    let old_key = created["license_key"].as_str().unwrap();
    assert_eq!(
        app.activate(old_key, "old-key").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(act("cancel").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(status().await, "canceled");
    // A refused action is shown on the page, not as a raw error.
    let again = act("resume").await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(again.text().await.unwrap().contains("role=\"alert\""));
    let deleted = act("delete").await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    let to = deleted.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with("/admin/subscriptions?min_position="));
    assert!(!browser.page(&to).await.contains("ann@example.com"));
    assert_eq!(
        browser
            .get(&format!("/admin/subscriptions/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_device_is_shown_in_the_detail_and_deactivated_from_it() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let created = app.subscription_with_devices(2).await;
    let id = created["id"].as_str().unwrap();
    let activated: Value = app
        .activate(created["license_key"].as_str().unwrap(), "laptop-1")
        .await
        .json()
        .await
        .unwrap();
    let device_id = activated["device_id"].as_str().unwrap();
    let path = format!("/admin/subscriptions/{id}");
    let html = browser.page(&path).await;
    assert!(html.contains("device laptop-1"));
    assert!(html.contains(&format!("/admin/devices/{device_id}/deactivate")));
    let response = browser
        .post(
            &format!("/admin/devices/{device_id}/deactivate"),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION].to_str().unwrap(), path);
    let html = browser.page(&path).await;
    assert!(html.contains(">inactive<"));
    assert!(!html.contains(&format!("/admin/devices/{device_id}/deactivate")));
    assert!(html.contains("DeviceDeactivated"));
}

#[tokio::test]
async fn the_auditor_sees_every_page_without_a_write_control_and_is_refused_writes() {
    let app = spawn_app().await;
    let created = app.subscription_with_devices(2).await;
    let id = created["id"].as_str().unwrap();
    app.activate(created["license_key"].as_str().unwrap(), "auditor-seen")
        .await;
    let auditor = auditor(&app).await;
    let detail = format!("/admin/subscriptions/{id}");
    for path in [
        "/admin",
        "/admin/subscriptions",
        detail.as_str(),
        "/admin/devices",
        "/admin/events",
    ] {
        let html = auditor.page(path).await;
        for control in [
            ">New subscription<",
            ">Save<",
            ">Suspend<",
            ">Resume<",
            ">Cancel subscription<",
            ">Delete<",
            ">Regenerate license key<",
            ">Deactivate<",
            "method=\"post\" action=\"/admin/subscriptions",
            "method=\"post\" action=\"/admin/devices",
        ] {
            assert!(
                !html.contains(control),
                "{path} shows {control} to an auditor"
            );
        }
        assert!(html.contains(">Sign out<"));
    }
    let list = auditor.page("/admin/subscriptions").await;
    assert!(list.contains(">Filter<") && list.contains("Export CSV"));
    assert!(auditor.page(&detail).await.contains(">Show<"));
    // And the server refuses what the pages do not offer.
    let token = auditor.form_token().await;
    let before = app.event_count().await;
    let refused = [
        auditor.get("/admin/subscriptions/new").await,
        auditor
            .get(&format!("/admin/subscriptions/{id}/confirm?action=delete"))
            .await,
        auditor
            .post(
                "/admin/subscriptions/new",
                &new_subscription_form(&token, "By auditor"),
            )
            .await,
        auditor
            .post(
                &format!("/admin/subscriptions/{id}/actions/suspend"),
                &[("csrf", &token)],
            )
            .await,
        auditor
            .post(
                &format!("/admin/subscriptions/{id}"),
                &[("csrf", &token), ("plan", "free"), ("max_devices", "1")],
            )
            .await,
    ];
    for response in refused {
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{}",
            response.url()
        );
    }
    assert_eq!(app.event_count().await, before);
    // The auditor may sign out.
    let response = auditor.post("/admin/logout", &[("csrf", &token)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn user_text_is_escaped_everywhere_it_is_shown() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let attack = "<script>alert(1)</script>";
    let created = app
        .create_subscription(json!({
            "customer_email": "xss@example.com",
            "customer_name": attack,
            "organization": "\"><img src=x onerror=alert(2)>",
            "plan": "pro",
            "max_devices": 1,
        }))
        .await;
    let id = created["id"].as_str().unwrap();
    let position = created["position"].as_i64().unwrap();
    for path in [
        format!("/admin/subscriptions/{id}"),
        format!("/admin/subscriptions?min_position={position}"),
    ] {
        let html = browser.page(&path).await;
        assert!(!html.contains(attack), "{path} renders the script");
        assert!(!html.contains("<img src=x"), "{path} renders the image");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_csv_export_follows_the_filter_and_defuses_formulas() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    for (email, name, plan) in [
        (
            "formula@example.com",
            "=HYPERLINK(\"http://evil\",\"x\")",
            "pro",
        ),
        ("plus@example.com", "+1, \"quoted\"", "pro"),
        ("other@example.com", "Other", "basic"),
    ] {
        app.create_subscription(json!({
            "customer_email": email, "customer_name": name, "plan": plan, "max_devices": 1,
        }))
        .await;
    }
    let last = app
        .create_subscription(json!({
            "customer_email": "at@example.com", "customer_name": "@SUM(A1)", "plan": "pro", "max_devices": 1,
        }))
        .await;
    let position = last["position"].as_i64().unwrap();
    browser
        .page(&format!("/admin/subscriptions?min_position={position}"))
        .await;
    let response = browser
        .get("/admin/subscriptions/export.csv?plan=pro")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("\"id\",\"customer_email\",\"customer_name\""));
    assert_eq!(
        lines.len(),
        4,
        "the header and the three pro subscriptions:\n{csv}"
    );
    assert!(!csv.contains("other@example.com"));
    assert!(csv.contains(",\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\","));
    assert!(csv.contains(",\"'+1, \"\"quoted\"\"\","));
    assert!(csv.contains(",\"'@SUM(A1)\","));
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let response = browser.post("/admin/logout", &[("csrf", &token)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/admin/login");
    assert!(response.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // The old cookie, replayed, is no longer a session.
    let after = browser.get("/admin").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER);
    assert_eq!(after.headers()[LOCATION], "/admin/login");
}

#[tokio::test]
async fn a_disabled_admin_cannot_sign_in_and_their_open_session_ends() {
    let app = spawn_app().await;
    let auditor = auditor(&app).await;
    assert_eq!(auditor.get("/admin").await.status(), StatusCode::OK);
    accounts::change_admin(
        &app.server.admins,
        app.server.admin_auth.sessions(),
        AUDITOR_EMAIL,
        accounts::AdminChange::Disable,
        EventMetadata::system(Utc::now()),
    )
    .await
    .unwrap();
    assert_eq!(auditor.get("/admin").await.status(), StatusCode::SEE_OTHER);
    let mut again = Browser::new(&app);
    let response = again.sign_in(AUDITOR_EMAIL, AUDITOR_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_history_and_the_as_of_view_show_the_past() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    let before_change = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let response = app
        .admin(reqwest::Method::PUT, &format!("/api/v1/subscriptions/{id}"))
        .json(&json!({"plan": "enterprise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = browser.page(&format!("/admin/subscriptions/{id}")).await;
    assert!(html.contains("SubscriptionPlanChanged") && html.contains("SubscriptionCreated"));
    assert!(html.contains(ADMIN_EMAIL), "the actor is shown by email");
    assert!(html.contains("127.0.0.1"));
    assert!(html.contains("<dd>enterprise</dd>"));
    let as_of = before_change.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let then = browser
        .page(&format!(
            "/admin/subscriptions/{id}?as_of={}",
            as_of.replace('+', "%2B")
        ))
        .await;
    assert!(then.contains("As it was at"));
    assert!(then.contains("<dd>pro</dd>"));
    assert!(
        !then.contains(">Save<"),
        "a past state has no write controls"
    );
    // Before it existed: said next to the field.
    let never = browser
        .page(&format!("/admin/subscriptions/{id}?as_of=2001-01-01"))
        .await;
    assert!(never.contains("role=\"alert\"") && never.contains("did not exist"));
}

#[tokio::test]
async fn a_session_ends_after_its_idle_time_and_at_its_absolute_end() {
    let app = spawn_app().await;
    let idle = Browser::signed_in(&app).await;
    let ended = Browser::signed_in(&app).await;
    assert_eq!(idle.get("/admin").await.status(), StatusCode::OK);
    // Idle longer than ACCESS_TOKEN_EXPIRE_MINUTES (30): one session's last use moved back.
    let long_ago = (Utc::now() - chrono::Duration::minutes(31)).to_rfc3339();
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query("update panel_sessions set last_seen_at = $1 where token_hash = (select token_hash from panel_sessions order by created_at limit 1)")
            .bind(long_ago.parse::<chrono::DateTime<Utc>>().unwrap())
            .execute(pool)
            .await
            .unwrap();
    });
    let statuses = [
        idle.get("/admin").await.status(),
        ended.get("/admin").await.status(),
    ];
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SEE_OTHER)
            .count(),
        1,
        "exactly the idle session is over: {statuses:?}"
    );
    // Past the admin session's expiry (REFRESH_TOKEN_EXPIRE_DAYS): every session is over,
    // however recently used.
    flowlytix_projections::with_db!(&app.db, pool => {
        sqlx::query("update admin_sessions set expires_at = $1")
            .bind(Utc::now() - chrono::Duration::seconds(1))
            .execute(pool)
            .await
            .unwrap();
    });
    assert_eq!(idle.get("/admin").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(ended.get("/admin").await.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_panel_sign_in_spends_the_json_sign_ins_rate_limit_budget() {
    // A budget of 4 a minute per address; starting the test app signed in once (JSON).
    let app = crate::helpers::spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "4")]).await;
    let json = app
        .anon(reqwest::Method::POST, "/api/v1/auth/login")
        .json(&json!({"email": ADMIN_EMAIL, "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), StatusCode::UNAUTHORIZED);
    // Two of the four are spent: the panel has two guesses left, not four.
    let mut browser = Browser::new(&app);
    let mut statuses = vec![];
    for _ in 0..3 {
        statuses.push(browser.sign_in(ADMIN_EMAIL, "guess").await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn the_per_account_throttle_shows_on_the_sign_in_page() {
    let app =
        crate::helpers::spawn_app_with(&[("RATE_LIMIT_SIGN_IN_PER_ACCOUNT_PER_HOUR", "2")]).await;
    let mut browser = Browser::new(&app);
    let mut last = None;
    for _ in 0..3 {
        last = Some(browser.sign_in("nobody@example.com", "guess").await);
    }
    let response = last.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("Too many sign-in attempts"));
    assert!(html.contains("value=\"nobody@example.com\""));
}

#[tokio::test]
async fn the_devices_and_events_pages_filter() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let created = app.subscription_with_devices(3).await;
    let key = created["license_key"].as_str().unwrap();
    app.activate(key, "alpha").await;
    let last: Value = app.activate(key, "beta").await.json().await.unwrap();
    assert!(last["device_id"].is_string());
    let id = created["id"].as_str().unwrap();
    // The devices read model catches up with both activations.
    for _ in 0..100 {
        let all = browser.page("/admin/devices").await;
        if all.contains("device alpha") && all.contains("device beta") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The search finds one of the two.
    let found = browser.page("/admin/devices?q=alpha").await;
    assert!(found.contains("<h1>Devices</h1>"));
    assert!(found.contains("device alpha") && !found.contains("device beta"));
    let linux = browser
        .page("/admin/devices?platform=linux&status=active")
        .await;
    assert!(linux.contains("device beta"));
    let none = browser.page("/admin/devices?status=inactive").await;
    assert!(!none.contains("device alpha"));

    let events = browser
        .page(&format!(
            "/admin/events?aggregate_id={id}&event_type=DeviceActivated"
        ))
        .await;
    assert!(events.contains("<h1>Events</h1>"));
    assert_eq!(
        events.matches("<td>DeviceActivated</td>").count(),
        2,
        "{events}"
    );
    assert!(!events.contains("<td>SubscriptionCreated</td>"));
    let by_license = browser
        .page(&format!("/admin/events?actor=license:{id}"))
        .await;
    assert!(by_license.contains("<td>DeviceActivated</td>"));
    assert!(
        !by_license.contains("<td>SubscriptionCreated</td>"),
        "the admin's event is filtered out"
    );
    let admins = browser.page("/admin/events?aggregate_type=AdminUser").await;
    assert!(
        admins.contains("<td>AdminCreated</td>") && !admins.contains("<td>DeviceActivated</td>")
    );
    // Paging by cursor: one page after the first event starts after it.
    let after_first = browser.page("/admin/events?after=1").await;
    assert!(!after_first.contains("<td data-label=\"#\">1</td>"));
}

#[tokio::test]
async fn the_dashboard_counts_and_refuses_a_bad_range_next_to_its_form() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let soon = (Utc::now() + chrono::Duration::days(10)).to_rfc3339();
    let created = app
        .create_subscription(json!({
            "customer_email": "soon@example.com", "customer_name": "Soon", "plan": "team",
            "max_devices": 1, "expires_at": soon,
        }))
        .await;
    let position = created["position"].as_i64().unwrap();
    browser
        .page(&format!("/admin/subscriptions?min_position={position}"))
        .await;
    let html = browser.page("/admin").await;
    assert!(html.contains("<h1>Dashboard</h1>"));
    assert!(html.contains("Activations per day") && html.contains("New subscriptions per day"));
    assert!(html.contains("<svg"));
    assert!(
        html.contains("soon@example.com"),
        "expiring in the next 30 days"
    );
    assert!(html.contains("<span>team</span>"), "counted by plan");
    let response = browser.get("/admin?from=2026-05-01&to=2026-01-01").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"2026-05-01\""));
}

#[tokio::test]
async fn the_same_new_subscription_form_sent_twice_creates_one_subscription() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let form_page = browser.page("/admin/subscriptions/new").await;
    let start = form_page.find("name=\"subscription_id\" value=\"").unwrap() + 30;
    let id = form_page[start..start + 36].to_owned();
    let token = browser.form_token().await;
    let mut form = new_subscription_form(&token, "Twice Sent");
    form.push(("subscription_id", &id));
    let first = browser.post("/admin/subscriptions/new", &form).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first
        .text()
        .await
        .unwrap()
        .contains(&format!("/admin/subscriptions/{id}")));
    let events = app.event_count().await;
    // A reload of the answer sends the form again: refused, said, and nothing written.
    let again = browser.post("/admin/subscriptions/new", &form).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let html = again.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("already sent"));
    assert!(!html.contains("FLX-"), "no key is shown the second time");
    assert_eq!(app.event_count().await, events);
}
