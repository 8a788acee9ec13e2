//! The panel's catalogue pages over HTTP: products, entitlements and policies made through
//! their forms, a subscription made in the panel that follows a policy (and one that
//! overrides it), archiving, grace, refusals that write nothing, and the auditor's view.

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};
use crate::panel::{auditor, unlabelled_controls, Browser};

/// Posts a form; asserts the status and returns the redirect's target or the page.
async fn send(browser: &Browser, path: &str, form: &[(&str, &str)], status: StatusCode) -> String {
    let response = browser.post(path, form).await;
    let actual = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    let html = response.text().await.unwrap();
    assert_eq!(actual, status, "POST {path}: {html}");
    location.unwrap_or(html)
}

async fn new_product(browser: &Browser, token: &str, code: &str) -> String {
    let to = send(
        browser,
        "/admin/products/new",
        &[
            ("csrf", token),
            ("name", "Desk App"),
            ("code", code),
            ("url", "https://desk.example.com"),
        ],
        StatusCode::SEE_OTHER,
    )
    .await;
    assert!(to.starts_with("/admin/products?min_position="), "{to}");
    to
}

/// The id of the live product or policy with this code, from the JSON API.
async fn id_of(app: &TestApp, path: &str, code: &str) -> String {
    let list = app.api().get(&format!("{path}?per_page=200")).await;
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["code"] == code)
        .unwrap_or_else(|| panic!("{code} in {list}"));
    item["id"].as_str().unwrap().to_owned()
}

fn policy_form<'a>(token: &'a str, product: &'a str, code: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", token),
        ("product", product),
        ("name", "Pro yearly"),
        ("code", code),
        ("max_devices", "5"),
        ("duration", "P1Y"),
        ("trial_duration", ""),
        ("expiration_basis", "from_creation"),
        ("expiration_strategy", "allow_grace"),
        ("grace_period", "P7D"),
        ("token_ttl", ""),
        ("entitlements", "export"),
    ]
}

fn subscription_form<'a>(
    token: &'a str,
    email: &'a str,
    policy: &'a str,
    max_devices: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", token),
        ("customer_email", email),
        ("customer_name", "Follower"),
        ("organization", ""),
        ("policy", policy),
        ("plan", ""),
        ("max_devices", max_devices),
        ("expires_at", ""),
        ("trial_ends_at", ""),
        ("features", ""),
    ]
}

/// Makes the product `desk`, the entitlement `export` and the policy `desk/pro` through
/// the forms; returns the policy's id.
async fn catalogue(app: &TestApp, browser: &Browser, token: &str) -> String {
    let to = new_product(browser, token, "desk").await;
    let products = browser.page(&to).await;
    assert!(products.contains("<h1>Products</h1>"));
    assert!(products.contains("aria-current=\"page\">Products<"));
    assert!(products.contains("<code>desk</code>") && products.contains("Desk App"));
    let to = send(
        browser,
        "/admin/entitlements",
        &[
            ("csrf", token),
            ("code", "export"),
            ("name", "Export to PDF"),
        ],
        StatusCode::SEE_OTHER,
    )
    .await;
    assert!(browser.page(&to).await.contains("Export to PDF"));
    let product = id_of(app, "/api/v1/products", "desk").await;
    let form_page = browser.page("/admin/policies/new").await;
    assert!(
        unlabelled_controls(&form_page).is_empty(),
        "{:?}",
        unlabelled_controls(&form_page)
    );
    assert!(form_page.contains("id=\"entitlement-export\""));
    let to = send(
        browser,
        "/admin/policies/new",
        &policy_form(token, &product, "pro"),
        StatusCode::SEE_OTHER,
    )
    .await;
    let policies = browser.page(&to).await;
    assert!(policies.contains("<h1>Policies</h1>"));
    assert!(policies.contains("desk/pro") && policies.contains("Pro yearly"));
    assert!(
        policies.contains(">P1Y<") && policies.contains(">P7D<") && policies.contains(">export<")
    );
    id_of(app, "/api/v1/policies", "pro").await
}

/// The subscription id in the answer to the new-subscription form.
fn created_id(html: &str) -> String {
    let start = html.find("href=\"/admin/subscriptions/").unwrap() + 27;
    html[start..start + 36].to_owned()
}

#[tokio::test]
async fn a_subscription_made_in_the_panel_follows_a_policy_made_in_the_panel() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let policy = catalogue(&app, &browser, &token).await;
    let page = browser.page(&format!("/admin/policies/{policy}")).await;
    assert!(page.contains("<h1>Pro yearly</h1>"));
    assert!(page.contains("<code>export</code> Export to PDF"));
    // The new-subscription form offers it, with its terms beside the select.
    let form = browser.page("/admin/subscriptions/new").await;
    assert!(form.contains("<label for=\"policy\">Policy</label>"));
    assert!(form.contains(">None (custom)<"));
    assert!(form.contains("<option value=\"desk/pro\">desk/pro — Pro yearly</option>"));
    assert!(form.contains("data-policy=\"desk/pro\""));
    assert!(unlabelled_controls(&form).is_empty());
    // Plan and Max devices left empty: all from the policy.
    let html = send(
        &browser,
        "/admin/subscriptions/new",
        &subscription_form(&token, "follower@example.com", "desk/pro", ""),
        StatusCode::CREATED,
    )
    .await;
    let follower = app
        .api()
        .get(&format!("/api/v1/subscriptions/{}", created_id(&html)))
        .await;
    assert_eq!(follower["policy_code"], "pro");
    assert_eq!(follower["product_code"], "desk");
    assert_eq!(follower["plan"], "pro");
    assert_eq!(follower["max_devices"], 5);
    assert_eq!(follower["entitlements"], json!(["export"]));
    assert_eq!(follower["overrides"], json!([]));
    // A device limit filled in overrides the policy's, and the page says so.
    let html = send(
        &browser,
        "/admin/subscriptions/new",
        &subscription_form(&token, "own@example.com", "desk/pro", "3"),
        StatusCode::CREATED,
    )
    .await;
    let id = created_id(&html);
    let own = app.api().get(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(own["max_devices"], 3);
    assert_eq!(own["overrides"], json!(["max_devices"]));
    let detail = browser.page(&format!("/admin/subscriptions/{id}")).await;
    assert!(detail.contains("(own value; policy: 5)"), "{detail}");
    assert!(detail.contains(&format!(
        "href=\"/admin/policies/{policy}\">desk/pro — Pro yearly<"
    )));
    assert!(detail.contains("<code>export</code>"));
    // The list filters by policy and by product.
    app.wait_for_read_models().await;
    let list = browser.page("/admin/subscriptions?policy=desk%2Fpro").await;
    assert!(list.contains("follower@example.com") && list.contains("own@example.com"));
    assert!(list.contains("<option value=\"desk/pro\" selected>"));
    let list = browser.page("/admin/subscriptions?product=desk").await;
    assert!(list.contains("follower@example.com"));
    let policies = browser.page("/admin/policies").await;
    assert!(policies.contains("policy=desk%2Fpro\">2</a>"), "{policies}");
    // Archived: kept by its followers, offered no more.
    let confirm = browser
        .page(&format!("/admin/policies/{policy}/archive"))
        .await;
    assert!(confirm.contains(">Confirm<"));
    send(
        &browser,
        &format!("/admin/policies/{policy}/archive"),
        &[("csrf", &token)],
        StatusCode::SEE_OTHER,
    )
    .await;
    let page = browser.page(&format!("/admin/policies/{policy}")).await;
    assert!(page.contains(">archived<") && page.contains(">Unarchive<"));
    let form = browser.page("/admin/subscriptions/new").await;
    assert!(!form.contains("desk/pro — Pro yearly"));
    // Unarchived: offered again.
    send(
        &browser,
        &format!("/admin/policies/{policy}/unarchive"),
        &[("csrf", &token)],
        StatusCode::SEE_OTHER,
    )
    .await;
    let form = browser.page("/admin/subscriptions/new").await;
    assert!(form.contains("desk/pro — Pro yearly"));
}

#[tokio::test]
async fn an_editable_policy_and_product_and_a_subscription_in_grace() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let policy = catalogue(&app, &browser, &token).await;
    // Every setting but product and code changes; an empty duration clears it.
    let mut form = policy_form(&token, "", "");
    form.retain(|(name, _)| !matches!(*name, "product" | "code" | "name" | "max_devices"));
    form.extend([("name", "Pro monthly"), ("max_devices", "4")]);
    send(
        &browser,
        &format!("/admin/policies/{policy}"),
        &form,
        StatusCode::SEE_OTHER,
    )
    .await;
    let json = app.api().get(&format!("/api/v1/policies/{policy}")).await;
    assert_eq!(json["name"], "Pro monthly");
    assert_eq!(json["max_devices"], 4);
    assert_eq!(json["code"], "pro");
    assert_eq!(json["license_model"], "node_locked");
    assert_eq!(json["require_heartbeat"], false);
    // Floating seats with heartbeats, a churn limit and borrowing, from the form; the page
    // says them in words.
    form.extend([
        ("license_model", "floating"),
        ("heartbeat_duration", "PT10M"),
        ("heartbeat_cull", "keep"),
        ("resurrection_window", "PT1H"),
        ("max_deactivations", "3"),
        ("deactivation_window", "P30D"),
        ("max_borrow", "P7D"),
    ]);
    send(
        &browser,
        &format!("/admin/policies/{policy}"),
        &form,
        StatusCode::SEE_OTHER,
    )
    .await;
    let json = app.api().get(&format!("/api/v1/policies/{policy}")).await;
    assert_eq!(json["license_model"], "floating");
    assert_eq!(json["require_heartbeat"], true);
    assert_eq!(json["heartbeat_duration"], "PT10M");
    assert_eq!(json["heartbeat_cull"], "keep");
    assert_eq!(json["resurrection_window"], "PT1H");
    assert_eq!(json["max_deactivations"], 3);
    assert_eq!(json["deactivation_window"], "P30D");
    assert_eq!(json["max_borrow"], "P7D");
    let page = browser.page(&format!("/admin/policies/{policy}")).await;
    assert!(
        page.contains("floating: max devices counts live leases"),
        "{page}"
    );
    assert!(page.contains("every PT10M; dead devices kept, revived within PT1H"));
    assert!(page.contains("3 per P30D"));
    // A churn limit without its window is refused beside the form, nothing written.
    let before = app.event_count().await;
    form.retain(|(name, _)| *name != "deactivation_window");
    form.push(("deactivation_window", ""));
    let html = send(
        &browser,
        &format!("/admin/policies/{policy}"),
        &form,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(html.contains("role=\"alert\""), "{html}");
    assert_eq!(app.event_count().await, before);
    // The product's name and URL change; its code does not.
    let product = id_of(&app, "/api/v1/products", "desk").await;
    send(
        &browser,
        &format!("/admin/products/{product}"),
        &[("csrf", &token), ("name", "Desk Suite"), ("url", "")],
        StatusCode::SEE_OTHER,
    )
    .await;
    let json = app.api().get(&format!("/api/v1/products/{product}")).await;
    assert_eq!(json["name"], "Desk Suite");
    assert_eq!(json["url"], Value::Null);
    // Expired a day ago under a policy with seven days of grace.
    let expired = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let started = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339();
    let created = app
        .create_subscription(json!({"customer_email": "late@example.com",
            "customer_name": "Late Payer", "policy": "desk/pro", "starts_at": started, "expires_at": expired}))
        .await;
    let id = created["id"].as_str().unwrap();
    let detail = browser.page(&format!("/admin/subscriptions/{id}")).await;
    assert!(
        detail.contains(">expired<") && detail.contains("in grace until"),
        "{detail}"
    );
    app.wait_for_read_models().await;
    let list = browser.page("/admin/subscriptions").await;
    assert!(list.contains(">in grace<"));
    let dashboard = browser.page("/admin").await;
    let tile = &dashboard[dashboard.find("id=\"in-grace\"").unwrap()..];
    assert!(tile.contains("<p class=\"figure\">1</p>"), "{tile}");
    assert!(dashboard.contains(">desk/pro<"));
}

#[tokio::test]
async fn refused_catalogue_input_is_shown_beside_its_form_and_writes_nothing() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let policy = catalogue(&app, &browser, &token).await;
    let product = id_of(&app, "/api/v1/products", "desk").await;
    let before = app.event_count().await;
    let html = send(
        &browser,
        "/admin/products/new",
        &[
            ("csrf", &token),
            ("name", "Bad"),
            ("code", "Bad Code!"),
            ("url", ""),
        ],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"Bad Code!\""));
    let html = send(
        &browser,
        "/admin/entitlements",
        &[("csrf", &token), ("code", "NO WAY"), ("name", "x")],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"NO WAY\""));
    let mut form = policy_form(&token, &product, "monthly");
    form[5] = ("duration", "a year");
    let html = send(
        &browser,
        "/admin/policies/new",
        &form,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        html.contains("role=\"alert\"") && html.contains("Duration"),
        "{html}"
    );
    assert!(html.contains("value=\"a year\"") && html.contains("value=\"monthly\""));
    let mut form = policy_form(&token, &product, "Bad Code");
    form[5] = ("duration", "P1M");
    let html = send(
        &browser,
        "/admin/policies/new",
        &form,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        html.contains("role=\"alert\"") && html.contains("Code"),
        "{html}"
    );
    let mut form = policy_form(&token, &product, "monthly");
    form[4] = ("max_devices", "many");
    let html = send(
        &browser,
        "/admin/policies/new",
        &form,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(html.contains("Max devices"));
    // What is in use is not deleted; the page says why.
    let html = send(
        &browser,
        &format!("/admin/products/{product}/delete"),
        &[("csrf", &token)],
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        html.contains("role=\"alert\"") && html.contains("pro"),
        "{html}"
    );
    let entitlement = app.api().get("/api/v1/entitlements").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let html = send(
        &browser,
        &format!("/admin/entitlements/{entitlement}/delete"),
        &[("csrf", &token)],
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        html.contains("role=\"alert\"") && html.contains("desk/pro"),
        "{html}"
    );
    assert_eq!(app.event_count().await, before);
    // A policy edit with a bad grace period is refused the same way.
    let html = send(
        &browser,
        &format!("/admin/policies/{policy}"),
        &[
            ("csrf", &token),
            ("name", "Pro"),
            ("max_devices", "5"),
            ("grace_period", "soon"),
            ("expiration_strategy", "allow_grace"),
        ],
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"soon\""));
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn an_auditor_sees_the_catalogue_pages_without_a_control_that_writes() {
    let app = spawn_app().await;
    let admin = Browser::signed_in(&app).await;
    let token = admin.form_token().await;
    let policy = catalogue(&app, &admin, &token).await;
    let product = id_of(&app, "/api/v1/products", "desk").await;
    let auditor = auditor(&app).await;
    let pages = [
        "/admin/products".to_owned(),
        format!("/admin/products/{product}"),
        "/admin/entitlements".to_owned(),
        "/admin/policies".to_owned(),
        format!("/admin/policies/{policy}"),
    ];
    for path in &pages {
        let html = auditor.page(path).await;
        assert!(html.contains("desk"), "{path}");
        for control in [
            ">New product<",
            ">New policy<",
            ">Save<",
            ">Delete<",
            ">Archive<",
            ">Rename<",
            ">Add entitlement<",
            "method=\"post\" action=\"/admin/p",
            "method=\"post\" action=\"/admin/e",
        ] {
            assert!(
                !html.contains(control),
                "{path} shows {control} to an auditor"
            );
        }
        assert_eq!(html.matches("<button").count(), 1, "{path}: only Sign out");
    }
    let auditor_token = auditor.form_token().await;
    let before = app.event_count().await;
    for response in [
        auditor.get("/admin/products/new").await,
        auditor.get("/admin/policies/new").await,
        auditor
            .get(&format!("/admin/policies/{policy}/archive"))
            .await,
        auditor
            .post(
                &format!("/admin/policies/{policy}/archive"),
                &[("csrf", &auditor_token)],
            )
            .await,
        auditor
            .post(
                "/admin/entitlements",
                &[("csrf", &auditor_token), ("code", "x"), ("name", "x")],
            )
            .await,
        auditor
            .post(
                &format!("/admin/products/{product}/delete"),
                &[("csrf", &auditor_token)],
            )
            .await,
    ] {
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{}",
            response.url()
        );
    }
    assert_eq!(app.event_count().await, before);
}
