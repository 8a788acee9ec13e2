//! The admin panel in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) by fantoccini. Each test starts its own chromedriver on a free
//! port with an empty profile, so tests run in parallel. Every flow saves screenshots
//! under `target/screenshots/`.
//!
//! Without `/usr/bin/chromedriver` the tests say once that they were skipped, and fail
//! when `FLOWLYTIX_REQUIRE_SERVICES=1` (CI installs chromium; see `.ci/run`). They run on
//! the embedded backend only: the panel's HTTP tests cover both backends.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use flowlytix_aggregates::Role;
use flowlytix_server::auth::accounts;
use flowlytix_server::store::EventMetadata;
use futures::FutureExt;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::{backend, spawn_app, Backend, TestApp, ADMIN_EMAIL, ADMIN_PASSWORD};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// True (after saying why, once) when the browser tests cannot or need not run here.
fn skip() -> bool {
    static SAID: OnceLock<()> = OnceLock::new();
    if backend() == Backend::Postgres {
        SAID.get_or_init(|| eprintln!("note: the browser tests run on the embedded backend only"));
        return true;
    }
    if std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists() {
        return false;
    }
    assert!(
        std::env::var("FLOWLYTIX_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "FLOWLYTIX_REQUIRE_SERVICES=1 but {CHROMEDRIVER} or {CHROMIUM} is missing \
         (apt-get install chromium chromium-driver)"
    );
    SAID.get_or_init(|| {
        eprintln!(
            "skipped: the browser tests, because {CHROMEDRIVER} is missing \
             (apt-get install chromium chromium-driver)"
        )
    });
    true
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}

/// A headless chromium of this test's own, behind a chromedriver of its own.
struct Browser {
    client: Client,
    base: String,
    name: &'static str,
    shots: u32,
    _driver: Child,
    profile: PathBuf,
}

impl Browser {
    async fn start(app: &TestApp, name: &'static str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let profile =
            std::env::temp_dir().join(format!("flowlytix-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1440,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        let mut last_error = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => {
                    client.set_window_size(1440, 1000).await.unwrap();
                    return Self {
                        client,
                        base: app.address.clone(),
                        name,
                        shots: 0,
                        _driver: driver,
                        profile,
                    };
                }
                Err(error) => last_error = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start: {last_error:?}");
    }

    /// Ends the browser session whatever the flow's outcome (so no chromium outlives a
    /// failed test), then passes a failure on.
    async fn finish(mut self, outcome: std::thread::Result<()>) {
        if outcome.is_err() {
            // What the browser showed when it went wrong.
            self.screenshot("failure").await;
            if let Ok(source) = self.client.source().await {
                let file = screenshot_dir().join(format!("{}-failure.html", self.name));
                let _ = std::fs::write(file, source);
            }
        }
        let _ = self.client.clone().close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    async fn fill(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks what leads to another page, and waits until that page has replaced this one
    /// (a click may return before the navigation it starts has finished).
    async fn click_to_navigate(&self, locator: Locator<'_>, what: &str) {
        let page = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .find(locator)
            .await
            .unwrap_or_else(|e| panic!("no {what}: {e}"))
            .click()
            .await
            .unwrap();
        for _ in 0..100 {
            // The old document's element goes stale once the new one is in.
            if page.tag_name().await.is_err() {
                let _ = self
                    .client
                    .wait()
                    .at_most(Duration::from_secs(5))
                    .for_element(Locator::Css("body"))
                    .await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {what} did not lead to another page");
    }

    async fn click_button(&self, text: &str) {
        let xpath = format!("//button[normalize-space()='{text}']");
        self.click_to_navigate(Locator::XPath(&xpath), &format!("button {text}"))
            .await;
    }

    async fn click_link(&self, text: &str) {
        self.click_to_navigate(Locator::LinkText(text), &format!("link {text}"))
            .await;
    }

    async fn text_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing at {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn h1(&self) -> String {
        self.text_of("h1").await
    }

    async fn count(&self, locator: Locator<'_>) -> usize {
        self.client.find_all(locator).await.unwrap().len()
    }

    async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    async fn screenshot(&mut self, what: &str) {
        self.shots += 1;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        let file = dir.join(format!("{}-{:02}-{what}.png", self.name, self.shots));
        std::fs::write(&file, png).unwrap();
    }
}

/// The page does not scroll sideways (wide tables scroll inside their own box).
async fn assert_fits_the_width(b: &Browser) {
    let script = "const root = document.documentElement; \
        if (root.scrollWidth <= root.clientWidth) return []; \
        return [...document.querySelectorAll('body *')] \
          .filter(e => e.getBoundingClientRect().right > root.clientWidth + 1) \
          .slice(0, 10) \
          .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));";
    let wide = b.client.execute(script, vec![]).await.unwrap();
    assert_eq!(wide, json!([]), "{} scrolls sideways", b.path().await);
}

async fn sign_in(browser: &Browser, email: &str, password: &str) {
    browser.goto("/admin").await;
    assert_eq!(
        browser.path().await,
        "/admin/login",
        "signed out, /admin asks to sign in"
    );
    browser.fill("email", email).await;
    browser.fill("password", password).await;
    browser.click_button("Sign in").await;
}

#[tokio::test]
async fn an_admin_manages_a_subscription_in_the_browser() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let mut browser = Browser::start(&app, "admin").await;
    let outcome = AssertUnwindSafe(admin_flow(&mut browser, &app))
        .catch_unwind()
        .await;
    browser.finish(outcome).await;
}

async fn admin_flow(b: &mut Browser, app: &TestApp) {
    // A wrong password: an alert, and still the sign-in page.
    sign_in(b, ADMIN_EMAIL, "not the password").await;
    assert!(b
        .text_of("[role=alert]")
        .await
        .contains("Invalid email or password"));
    b.screenshot("sign-in-refused").await;
    sign_in(b, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(b.h1().await, "Dashboard");
    b.screenshot("dashboard").await;

    // Create a subscription; its key is shown once.
    b.click_link("Subscriptions").await;
    assert_eq!(b.h1().await, "Subscriptions");
    b.click_link("New subscription").await;
    b.fill("customer_email", "browser@example.com").await;
    b.fill("customer_name", "Browser Customer").await;
    b.fill("organization", "Headless Ltd").await;
    b.fill("plan", "pro").await;
    b.fill("max_devices", "2").await;
    b.fill("expires_at", "2031-12-31").await;
    b.fill("features", "sync, export").await;
    b.click_button("Create subscription").await;
    let key = b.text_of("#license-key").await;
    assert!(key.starts_with("FLX-"), "the key is shown: {key}");
    // The stylesheet and the script load under the strict CSP: the header has the panel's
    // colour, and the script has shown the copy button (hidden without JavaScript).
    let header = b.client.find(Locator::Css("header.top")).await.unwrap();
    let colour = header.css_value("background-color").await.unwrap();
    assert!(
        colour.contains("23, 32, 44"),
        "the stylesheet applies: {colour}"
    );
    let copy = b
        .client
        .find(Locator::Css("button[data-copy]"))
        .await
        .unwrap();
    assert!(copy.is_displayed().await.unwrap(), "panel.js ran");
    b.screenshot("license-key-once").await;
    b.click_link("Open the subscription").await;
    assert_eq!(b.h1().await, "Browser Customer");
    assert!(
        !b.client.source().await.unwrap().contains(&key),
        "never again"
    );
    let detail = b.path().await;

    // A device activated through the licensing API shows in the detail; deactivate it.
    let activated = app.activate(&key, "browser-laptop").await;
    assert_eq!(activated.status(), reqwest::StatusCode::CREATED);
    b.goto(&detail).await;
    assert!(b
        .text_of("#devices-heading + .table-wrap")
        .await
        .contains("device browser-laptop"));
    b.client.set_window_size(1440, 2600).await.unwrap();
    b.screenshot("detail-with-device").await;
    b.client.set_window_size(1440, 1000).await.unwrap();
    let while_active = Utc::now();
    b.click_button("Deactivate").await;
    assert!(b
        .text_of("#devices-heading + .table-wrap")
        .await
        .contains("inactive"));
    assert_eq!(
        b.count(Locator::XPath("//button[normalize-space()='Deactivate']"))
            .await,
        0
    );

    // Suspend and resume, each confirmed.
    b.click_button("Suspend").await;
    assert_eq!(b.h1().await, "Confirm");
    b.screenshot("confirm-suspend").await;
    b.click_button("Confirm").await;
    assert_eq!(b.text_of(".heading .status").await, "suspended");
    b.click_button("Resume").await;
    b.click_button("Confirm").await;
    assert_eq!(b.text_of(".heading .status").await, "active");

    // A new key: shown once, and different.
    b.click_button("Regenerate license key").await;
    b.click_button("Confirm").await;
    let new_key = b.text_of("#license-key").await;
    assert!(new_key.starts_with("FLX-") && new_key != key);
    b.screenshot("regenerated-key").await;

    // Find it by search.
    b.click_link("Subscriptions").await;
    b.fill("q", "browser customer").await;
    b.click_button("Filter").await;
    assert_eq!(b.count(Locator::LinkText("browser@example.com")).await, 1);
    b.screenshot("search").await;
    b.click_link("browser@example.com").await;
    assert_eq!(b.h1().await, "Browser Customer");

    // The history, and the state as of while the device was active.
    let history = b.text_of(".history").await;
    for event in [
        "SubscriptionCreated",
        "DeviceActivated",
        "DeviceDeactivated",
        "SubscriptionSuspended",
        "SubscriptionResumed",
        "LicenseKeyRegenerated",
    ] {
        assert!(history.contains(event), "history shows {event}");
    }
    assert!(history.contains(ADMIN_EMAIL));
    b.fill(
        "as_of",
        &while_active.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
    .await;
    b.click_button("Show").await;
    assert!(b.text_of("[role=status]").await.contains("As it was at"));
    let devices_then = b.text_of("#devices-heading + .table-wrap").await;
    assert!(
        devices_then.contains("device browser-laptop") && !devices_then.contains("inactive"),
        "as of then the device was active: {devices_then}"
    );
    b.screenshot("as-of").await;

    // Narrow screens: the same page at 375 px.
    b.client.set_window_size(375, 900).await.unwrap();
    b.goto(&detail).await;
    b.screenshot("detail-375px").await;
    assert_fits_the_width(b).await;
    b.goto("/admin/subscriptions").await;
    b.screenshot("list-375px").await;
    assert_fits_the_width(b).await;
    b.client.set_window_size(1440, 1000).await.unwrap();

    // The dashboard now counts what the flow did (the README's picture).
    b.click_link("Dashboard").await;
    b.client.set_window_size(1280, 1100).await.unwrap();
    b.screenshot("dashboard-with-data").await;
    b.client.set_window_size(1440, 1000).await.unwrap();

    // A webhook: created (its secret shown once), then its page.
    b.click_link("Webhooks").await;
    b.click_link("New webhook").await;
    b.fill("url", "https://hooks.invalid/browser").await;
    b.fill("description", "Billing system").await;
    b.click_button("Create webhook").await;
    assert_eq!(b.h1().await, "Webhook created");
    b.click_link("Open the webhook").await;
    assert_eq!(b.h1().await, "https://hooks.invalid/browser");
    b.screenshot("webhooks").await;

    // Sign out: the session is over.
    b.click_button("Sign out").await;
    assert_eq!(b.h1().await, "Sign in");
    b.goto("/admin/subscriptions").await;
    assert_eq!(b.path().await, "/admin/login");
    b.screenshot("signed-out").await;
}

#[tokio::test]
async fn an_auditor_sees_the_panel_read_only_in_the_browser() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    accounts::create_admin(
        &app.server.admins,
        "auditor@flowlytix.test",
        "auditor-password-123",
        Role::Auditor,
        EventMetadata::system(Utc::now()),
    )
    .await
    .unwrap();
    let created = app.subscription_with_devices(2).await;
    app.activate(created["license_key"].as_str().unwrap(), "audited-device")
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut browser = Browser::start(&app, "auditor").await;
    let outcome = AssertUnwindSafe(auditor_flow(&mut browser, &id))
        .catch_unwind()
        .await;
    browser.finish(outcome).await;
}

async fn auditor_flow(b: &mut Browser, id: &str) {
    {
        {
            // By keyboard only: type, Tab to the password, Enter submits.
            b.goto("/admin").await;
            let email = b.client.find(Locator::Id("email")).await.unwrap();
            email.send_keys("auditor@flowlytix.test").await.unwrap();
            email
                .send_keys(&char::from(Key::Tab).to_string())
                .await
                .unwrap();
            let focused = b.client.active_element().await.unwrap();
            assert_eq!(
                focused.attr("id").await.unwrap().as_deref(),
                Some("password")
            );
            let page = b.client.find(Locator::Css("html")).await.unwrap();
            focused
                .send_keys(&format!("auditor-password-123{}", char::from(Key::Enter)))
                .await
                .unwrap();
            for _ in 0..100 {
                if page.tag_name().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(b.h1().await, "Dashboard");
            b.click_link("Subscriptions").await;
            assert_eq!(b.count(Locator::LinkText("New subscription")).await, 0);
            assert_eq!(b.count(Locator::LinkText("Export CSV")).await, 1);
            b.screenshot("list").await;
            b.goto(&format!("/admin/subscriptions/{id}")).await;
            assert_eq!(b.h1().await, "Ann Example");
            for button in [
                "Save",
                "Suspend",
                "Cancel subscription",
                "Delete",
                "Regenerate license key",
                "Deactivate",
            ] {
                let xpath = format!("//button[normalize-space()='{button}']");
                assert_eq!(b.count(Locator::XPath(&xpath)).await, 0, "no {button}");
            }
            assert_eq!(
                b.count(Locator::XPath("//button[normalize-space()='Show']"))
                    .await,
                1
            );
            assert_eq!(
                b.count(Locator::XPath("//button[normalize-space()='Sign out']"))
                    .await,
                1
            );
            b.screenshot("detail").await;
            b.click_link("Events").await;
            assert_eq!(b.h1().await, "Events");
            b.screenshot("events").await;
            b.click_link("Devices").await;
            assert_eq!(b.h1().await, "Devices");
            b.screenshot("devices").await;
        }
    }
}

#[tokio::test]
async fn the_lists_read_as_cards_on_a_phone() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let created = app
        .create_subscription(json!({
            "customer_email": "maximilian.schwarzenegger-lindqvist@a-rather-long-company-domain.example.com",
            "customer_name": "Maximilian Schwarzenegger-Lindqvist",
            "organization": "Lindqvist & Partners GmbH", "plan": "enterprise", "max_devices": 25,
        }))
        .await;
    app.activate(created["license_key"].as_str().unwrap(), "phone-check")
        .await;
    app.wait_for_read_models().await;
    let mut browser = Browser::start(&app, "phone").await;
    let outcome = AssertUnwindSafe(phone_flow(&mut browser))
        .catch_unwind()
        .await;
    browser.finish(outcome).await;
}

/// Where the first row's cells with these captions sit, as `[caption, left, right, width]`
/// of the viewport, and the viewport's width.
async fn first_row_cells(b: &Browser, captions: &[&str]) -> (Vec<Value>, f64) {
    let script = "const row = document.querySelector('table.cards tbody tr'); \
        return [arguments[0].map(label => { \
          const cell = row.querySelector(`td[data-label=\"${label}\"]`); \
          const r = cell.getBoundingClientRect(); \
          return [label, r.left, r.right, r.width]; }), \
          document.documentElement.clientWidth];";
    let answer = b
        .client
        .execute(script, vec![json!(captions)])
        .await
        .unwrap();
    let cells = answer[0].as_array().unwrap().clone();
    (cells, answer[1].as_f64().unwrap())
}

async fn phone_flow(b: &mut Browser) {
    sign_in(b, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.client.set_window_size(375, 900).await.unwrap();
    b.goto("/admin/subscriptions").await;
    b.screenshot("subscriptions-375px").await;
    assert_fits_the_width(b).await;
    let (cells, width) = first_row_cells(b, &["Status", "Devices"]).await;
    for cell in &cells {
        let (left, right) = (cell[1].as_f64().unwrap(), cell[2].as_f64().unwrap());
        assert!(
            left >= 0.0 && right <= width && cell[3].as_f64().unwrap() > 0.0,
            "{cell} lies within the {width} px viewport"
        );
    }
    assert!(b.text_of("table.cards tbody tr").await.contains("active"));
    // The email is whole on its own line: it breaks (if at all) only where it must, so its
    // link is no wider than the card and the name below it stays on one line.
    let name_lines = b
        .client
        .execute(
            "const s = document.querySelector('table.cards tbody tr td .muted'); \
             return s.getClientRects().length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(name_lines, json!(1));

    // The other lists read the same way.
    for (path, captions) in [
        ("/admin/devices", vec!["Status", "Subscription"]),
        ("/admin/events", vec!["Time (UTC)", "Actor"]),
    ] {
        b.goto(path).await;
        b.screenshot(path.trim_start_matches("/admin/")).await;
        assert_fits_the_width(b).await;
        let (cells, width) = first_row_cells(b, &captions).await;
        for cell in &cells {
            assert!(
                cell[1].as_f64().unwrap() >= 0.0 && cell[2].as_f64().unwrap() <= width,
                "{path}: {cell} lies within the {width} px viewport"
            );
        }
    }

    // At 1440 px the subscriptions are still a table, with its header.
    b.client.set_window_size(1440, 1000).await.unwrap();
    b.goto("/admin/subscriptions").await;
    let header = b
        .client
        .find(Locator::Css("table.cards thead"))
        .await
        .unwrap();
    assert!(header.is_displayed().await.unwrap());
    assert_eq!(
        b.client
            .execute(
                "return getComputedStyle(document.querySelector('table.cards tbody tr')).display",
                vec![]
            )
            .await
            .unwrap(),
        json!("table-row")
    );
}

#[tokio::test]
async fn an_admin_makes_a_policy_and_a_subscription_that_follows_it_in_the_browser() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let mut browser = Browser::start(&app, "catalogue").await;
    let outcome = AssertUnwindSafe(catalogue_flow(&mut browser))
        .catch_unwind()
        .await;
    browser.finish(outcome).await;
}

async fn element(b: &Browser, id: &str) -> fantoccini::elements::Element {
    b.client.find(Locator::Id(id)).await.unwrap()
}

async fn catalogue_flow(b: &mut Browser) {
    sign_in(b, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.click_link("Products").await;
    assert_eq!(b.h1().await, "Products");
    b.click_link("New product").await;
    b.fill("name", "Desk App").await;
    b.fill("code", "desk").await;
    b.click_button("Create product").await;
    assert_eq!(b.h1().await, "Products");
    b.click_link("Entitlements").await;
    b.fill("code", "export").await;
    b.fill("name", "Export to PDF").await;
    b.click_button("Add entitlement").await;
    assert_eq!(b.h1().await, "Entitlements");
    b.click_link("Policies").await;
    b.click_link("New policy").await;
    element(b, "product")
        .await
        .select_by_index(1)
        .await
        .unwrap();
    b.fill("name", "Pro yearly").await;
    b.fill("code", "pro").await;
    b.fill("max_devices", "5").await;
    b.fill("duration", "P1Y").await;
    element(b, "expiration_strategy")
        .await
        .select_by_value("allow_grace")
        .await
        .unwrap();
    b.fill("grace_period", "P7D").await;
    element(b, "license_model")
        .await
        .select_by_value("floating")
        .await
        .unwrap();
    b.fill("heartbeat_duration", "PT10M").await;
    element(b, "entitlement-export")
        .await
        .click()
        .await
        .unwrap();
    b.screenshot("new-policy").await;
    b.client.set_window_size(375, 900).await.unwrap();
    assert_fits_the_width(b).await;
    b.screenshot("new-policy-375px").await;
    b.client.set_window_size(1440, 1000).await.unwrap();
    b.click_button("Create policy").await;
    assert_eq!(b.h1().await, "Policies");
    assert!(b.text_of("table.cards tbody").await.contains("desk/pro"));
    assert_fits_the_width(b).await;
    b.screenshot("policies").await;
    b.click_link("desk/pro").await;
    let fields = b.text_of("dl.fields").await;
    assert!(
        fields.contains("floating: max devices counts live leases")
            && fields.contains("every PT10M"),
        "{fields}"
    );
    b.screenshot("policy-floating").await;
    b.client.set_window_size(375, 900).await.unwrap();
    assert_fits_the_width(b).await;
    b.screenshot("policy-floating-375px").await;
    b.client.set_window_size(1440, 1000).await.unwrap();
    b.click_link("Subscriptions").await;
    b.click_link("New subscription").await;
    b.fill("customer_email", "follower@example.com").await;
    b.fill("customer_name", "Policy Follower").await;
    element(b, "policy")
        .await
        .select_by_value("desk/pro")
        .await
        .unwrap();
    // The script marks the chosen policy's terms.
    assert_eq!(
        b.count(Locator::Css("tr.chosen[data-policy='desk/pro']"))
            .await,
        1
    );
    b.screenshot("new-subscription-with-policy").await;
    b.click_button("Create subscription").await;
    b.click_link("Open the subscription").await;
    assert_eq!(b.h1().await, "Policy Follower");
    let fields = b.text_of("dl.fields").await;
    assert!(fields.contains("desk/pro — Pro yearly"), "{fields}");
    assert!(
        fields.contains("0 of 5") && fields.contains("export"),
        "{fields}"
    );
    b.screenshot("follower").await;
}

#[tokio::test]
async fn leases_and_floating_seats_read_well_at_both_widths() {
    if skip() {
        return;
    }
    let app = spawn_app().await;
    let api = app.api();
    let ids = crate::lease_views::policies(
        &api,
        &[
            (
                "float",
                json!({"license_model": "floating", "require_heartbeat": true,
                    "heartbeat_duration": "PT1H", "max_borrow": "P7D", "max_devices": 5}),
            ),
            (
                "beat",
                json!({"require_heartbeat": true, "heartbeat_duration": "PT1S",
                    "heartbeat_cull": "keep"}),
            ),
        ],
    )
    .await;
    let (id, key) = crate::lease_views::follower(&api, &ids[0], 1).await;
    let (_, token) = crate::lease_views::activate(&api, &key, "borrowing-laptop").await;
    let until = (Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    app.api()
        .licensing()
        .post("heartbeat", &json!({"token": token, "borrow_until": until}))
        .await
        .expect_status(reqwest::StatusCode::OK);
    let (_, token) = crate::lease_views::activate(&api, &key, "office-desktop").await;
    app.api()
        .licensing()
        .post("heartbeat", &json!({"token": token}))
        .await
        .expect_status(reqwest::StatusCode::OK);
    let (_, beat_key) = crate::lease_views::follower(&api, &ids[1], 2).await;
    crate::lease_views::activate(&api, &beat_key, "silent-workstation").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.wait_for_read_models().await;
    let mut browser = Browser::start(&app, "leases").await;
    let outcome = AssertUnwindSafe(leases_flow(&mut browser, &id))
        .catch_unwind()
        .await;
    browser.finish(outcome).await;
}

async fn leases_flow(b: &mut Browser, id: &str) {
    sign_in(b, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let subscription = format!("/admin/subscriptions/{id}");
    for (width, suffix) in [(1440, "1440px"), (375, "375px")] {
        b.client.set_window_size(width, 1000).await.unwrap();
        b.goto("/admin/devices").await;
        let rows = b.text_of("table.cards tbody").await;
        for state in ["live", "borrowed", "dead"] {
            assert!(
                rows.contains(state),
                "the devices list shows {state}: {rows}"
            );
        }
        b.screenshot(&format!("devices-{suffix}")).await;
        assert_fits_the_width(b).await;
        let (cells, viewport) =
            first_row_cells(b, &["Last heartbeat", "Lease deadline", "State"]).await;
        for cell in &cells {
            assert!(
                cell[1].as_f64().unwrap() >= 0.0 && cell[2].as_f64().unwrap() <= viewport,
                "{cell} lies within the {viewport} px viewport"
            );
        }
        b.goto(&subscription).await;
        assert!(b.text_of("#devices-heading").await.contains("Devices"));
        scroll_to(b, "devices-heading").await;
        b.screenshot(&format!("subscription-{suffix}")).await;
        assert_fits_the_width(b).await;
        b.goto("/admin").await;
        let seats = b.text_of("table.seats tbody").await;
        assert!(seats.contains("app/float"), "{seats}");
        scroll_to(b, "seats-heading").await;
        b.screenshot(&format!("dashboard-{suffix}")).await;
        assert_fits_the_width(b).await;
    }
}

/// Scrolls the element with this id to the top of the window (for a screenshot of it).
async fn scroll_to(b: &Browser, id: &str) {
    b.client
        .execute(
            "document.getElementById(arguments[0]).scrollIntoView()",
            vec![json!(id)],
        )
        .await
        .unwrap();
}
