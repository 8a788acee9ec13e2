//! What a device says about itself. One type, embedded wherever a device is described: the
//! activation command, the `DeviceActivated` event and the device's state.

use serde::{Deserialize, Serialize};

/// The device's own description, as its app reported it on activation (the fingerprint is
/// kept apart, and only as its hash). Embedded with `#[serde(flatten)]`, so the fields stay
/// where events and snapshots have always had them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub os_version: Option<String>,
    pub app_version: Option<String>,
    pub hostname: Option<String>,
}

impl DeviceInfo {
    /// Every field, for checks that apply to each of them (lengths, characters).
    pub fn fields(&self) -> [Option<&str>; 5] {
        [
            self.name.as_deref(),
            self.platform.as_deref(),
            self.os_version.as_deref(),
            self.app_version.as_deref(),
            self.hostname.as_deref(),
        ]
    }
}
