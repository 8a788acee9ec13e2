//! What every page's frame needs: the asset URLs, and for a signed-in user the navigation,
//! who they are and the form token of their session.

use flowlytix_aggregates::Role;

use super::assets;
use crate::app::App;
use crate::auth::browser_sessions::BrowserSession;

pub struct Layout {
    pub stylesheet: String,
    pub script: String,
    pub user: Option<SignedIn>,
}

pub struct SignedIn {
    pub email: String,
    pub role: &'static str,
    /// Admins see write controls; auditors none.
    pub can_write: bool,
    pub form_token: String,
    /// Which navigation link is the current page.
    pub section: &'static str,
}

impl Layout {
    /// For pages shown signed out (sign-in, errors).
    pub fn bare() -> Self {
        Self {
            stylesheet: assets::url("panel.css"),
            script: assets::url("panel.js"),
            user: None,
        }
    }

    pub async fn signed_in(app: &App, session: &BrowserSession, section: &'static str) -> Self {
        // The email for the header; an id if the admin cannot be read (the page still works).
        let admin_id = session.admin.admin_id;
        let email = match app.admins.load(&admin_id.to_string()).await {
            Ok((admin, _)) => admin
                .state()
                .map(|a| a.email.to_string())
                .unwrap_or_else(|| admin_id.to_string()),
            Err(_) => admin_id.to_string(),
        };
        Self {
            user: Some(SignedIn {
                email,
                role: session.admin.role.as_str(),
                can_write: session.admin.role == Role::Admin,
                form_token: session.form_token(),
                section,
            }),
            ..Self::bare()
        }
    }

    pub fn can_write(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.can_write)
    }

    pub fn form_token(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.form_token.as_str())
    }
}
