//! `/admin/devices`: every device of every live subscription, from the read model, with
//! search and filters.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use serde::Deserialize;

use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::Reader;
use crate::app::SharedApp;
use crate::read;
use crate::read::devices::{DeviceFilter, DeviceRecord, DeviceStatusFilter};

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Default)]
pub struct DeviceQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    platform: String,
    page: Option<u32>,
}

impl DeviceQuery {
    fn at_page(&self, page: u32) -> String {
        let pairs = [
            ("q", self.q.clone()),
            ("status", self.status.clone()),
            ("platform", self.platform.clone()),
            ("page", page.to_string()),
        ];
        let present: Vec<&(&str, String)> = pairs.iter().filter(|(_, v)| !v.is_empty()).collect();
        serde_urlencoded::to_string(present).unwrap_or_default()
    }
}

pub struct DeviceItem {
    pub name: String,
    pub platform: String,
    pub app_version: String,
    pub status: String,
    pub subscription_id: String,
    pub activated_at: String,
    pub last_seen_at: String,
}

impl From<DeviceRecord> for DeviceItem {
    fn from(row: DeviceRecord) -> Self {
        let day = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
        Self {
            name: row
                .name
                .or(row.hostname)
                .unwrap_or_else(|| "unnamed device".into()),
            platform: [row.platform, row.os_version]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            app_version: row.app_version.unwrap_or_default(),
            status: row.status,
            subscription_id: row.subscription_id.to_string(),
            activated_at: day(row.activated_at),
            last_seen_at: row.last_seen_at.map(day).unwrap_or_default(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "panel/devices.html")]
pub struct DevicesPage {
    layout: Layout,
    query: DeviceQuery,
    rows: Vec<DeviceItem>,
    total: i64,
    previous: Option<String>,
    next: Option<String>,
}

pub async fn page(
    State(app): State<SharedApp>,
    Reader(session): Reader,
    PageQuery(query): PageQuery<DeviceQuery>,
) -> Result<DevicesPage, PanelError> {
    let page = query.page.unwrap_or(1).max(1);
    let status = match query.status.as_str() {
        "active" => Some(DeviceStatusFilter::Active),
        "inactive" => Some(DeviceStatusFilter::Inactive),
        _ => None,
    };
    let filter = DeviceFilter {
        subscription_id: None,
        status,
        platform: forms::optional(&query.platform),
        q: forms::optional(&query.q),
        page: Some(page),
        per_page: Some(PER_PAGE),
        min_position: None,
    };
    let (rows, total) = read::devices::list(&app.db, &filter).await?;
    let shown = i64::from(page - 1) * i64::from(PER_PAGE) + rows.len() as i64;
    Ok(DevicesPage {
        layout: Layout::signed_in(&app, &session, "devices").await,
        rows: rows.into_iter().map(DeviceItem::from).collect(),
        total,
        previous: (page > 1).then(|| query.at_page(page - 1)),
        next: (shown < total).then(|| query.at_page(page + 1)),
        query,
    })
}
