//! What admins do to one device: see it, rename or annotate it, deactivate it.

use flowlytix_aggregates::subscription::{Device, SubscriptionState};
use flowlytix_aggregates::{DeactivationReason, DeviceId, SubscriptionAction, SubscriptionId};

use super::{ManageError, SubscriptionAdmin};
use crate::store::EventMetadata;

/// A device with the subscription it belongs to, and the event-log position of the
/// command that produced this state (when there was one).
pub struct DeviceFound {
    pub subscription: SubscriptionState,
    pub device: Device,
    pub position: Option<i64>,
}

impl SubscriptionAdmin {
    /// Which subscription a device belongs to, straight from the event log.
    async fn subscription_of(&self, device: DeviceId) -> Result<SubscriptionId, ManageError> {
        self.lookup
            .subscription_by_device(device)
            .await?
            .ok_or(ManageError::DeviceNotFound)
    }
}

fn found(
    state: Option<&SubscriptionState>,
    device_id: DeviceId,
    position: Option<i64>,
) -> Result<DeviceFound, ManageError> {
    let state = state.ok_or(ManageError::DeviceNotFound)?;
    let device = state.device(device_id).ok_or(ManageError::DeviceNotFound)?;
    Ok(DeviceFound {
        device: device.clone(),
        subscription: state.clone(),
        position,
    })
}

impl SubscriptionAdmin {
    /// One device, active or not, of a subscription that is not deleted.
    pub async fn device(&self, device_id: DeviceId) -> Result<DeviceFound, ManageError> {
        let subscription_id = self.subscription_of(device_id).await?;
        let (subscription, _) = self.commands.load(subscription_id).await?;
        found(subscription.live(), device_id, None)
    }

    async fn device_command(
        &self,
        device_id: DeviceId,
        action: SubscriptionAction,
        metadata: EventMetadata,
    ) -> Result<DeviceFound, ManageError> {
        let subscription_id = self.subscription_of(device_id).await?;
        let committed = self
            .commands
            .run(subscription_id, vec![action], metadata, None)
            .await?;
        found(
            committed.aggregate.live(),
            device_id,
            Some(committed.position),
        )
    }

    pub async fn update_device(
        &self,
        device_id: DeviceId,
        name: Option<String>,
        notes: Option<String>,
        metadata: EventMetadata,
    ) -> Result<DeviceFound, ManageError> {
        let action = SubscriptionAction::UpdateDevice {
            device_id,
            name,
            notes,
        };
        self.device_command(device_id, action, metadata).await
    }

    /// Frees the device's slot; its tokens stop validating online at once.
    pub async fn deactivate_device(
        &self,
        device_id: DeviceId,
        metadata: EventMetadata,
    ) -> Result<DeviceFound, ManageError> {
        let action = SubscriptionAction::DeactivateDevice {
            device_id,
            reason: DeactivationReason::Admin,
        };
        self.device_command(device_id, action, metadata).await
    }
}
