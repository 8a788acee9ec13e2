//! `/admin/devices`: every device of every live subscription, from the read model, with
//! search and filters.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::error::PanelError;
use super::forms::{self, PageQuery};
use super::layout::Layout;
use super::session::Reader;
use crate::app::SharedApp;
use crate::http::views::DeviceView;
use crate::read;
use crate::read::devices::{DeviceFilter, DeviceStatusFilter};
use crate::read::leases::DeviceLeases;

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
    pub status: &'static str,
    pub subscription_id: String,
    pub activated_at: String,
    pub last_seen_at: String,
    pub last_heartbeat_at: String,
    pub lease_expires_at: String,
    /// live, dead or borrowed (empty for a device deactivated otherwise).
    pub state: &'static str,
}

impl From<DeviceView> for DeviceItem {
    fn from(device: DeviceView) -> Self {
        let minute = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M").to_string();
        Self {
            name: device
                .name
                .or(device.hostname)
                .unwrap_or_else(|| "unnamed device".into()),
            platform: [device.platform, device.os_version]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            app_version: device.app_version.unwrap_or_default(),
            status: device.status,
            subscription_id: device.subscription_id.to_string(),
            activated_at: minute(device.activated_at),
            last_seen_at: device.last_seen_at.map(minute).unwrap_or_default(),
            last_heartbeat_at: device.last_heartbeat_at.map(minute).unwrap_or_default(),
            lease_expires_at: device.lease_expires_at.map(minute).unwrap_or_default(),
            state: device.state.map_or("", |s| s.as_str()),
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
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let leases = DeviceLeases::of(&app.db, &ids).await?;
    let now = Utc::now();
    let shown = i64::from(page - 1) * i64::from(PER_PAGE) + rows.len() as i64;
    Ok(DevicesPage {
        layout: Layout::signed_in(&app, &session, "devices").await,
        rows: rows
            .into_iter()
            .map(|row| DeviceItem::from(DeviceView::from_record(row, &leases, now)))
            .collect(),
        total,
        previous: (page > 1).then(|| query.at_page(page - 1)),
        next: (shown < total).then(|| query.at_page(page + 1)),
        query,
    })
}
