//! Command names for the metrics (`flowlytix_commands_total{command=…}`), kept here rather
//! than in the domain crate, which knows nothing of metrics.

use flowlytix_aggregates::webhook_endpoint::WebhookEndpointCommand;
use flowlytix_aggregates::{
    AdminCommand, EntitlementCommand, PolicyCommand, ProductCommand, SubscriptionAction,
    SubscriptionCommand,
};

use super::CommandName;

impl CommandName for SubscriptionCommand {
    fn command_name(&self) -> Option<&'static str> {
        Some(match &self.action {
            SubscriptionAction::CreateSubscription(_) => "CreateSubscription",
            SubscriptionAction::ChangePlan { .. } => "ChangePlan",
            SubscriptionAction::ChangeDeviceLimit { .. } => "ChangeDeviceLimit",
            SubscriptionAction::ChangePeriod(_) => "ChangePeriod",
            SubscriptionAction::UpdateDetails(_) => "UpdateDetails",
            SubscriptionAction::SuspendSubscription { .. } => "SuspendSubscription",
            SubscriptionAction::ResumeSubscription => "ResumeSubscription",
            SubscriptionAction::MarkPastDue => "MarkPastDue",
            SubscriptionAction::CancelSubscription { .. } => "CancelSubscription",
            SubscriptionAction::DeleteSubscription => "DeleteSubscription",
            SubscriptionAction::RegenerateLicenseKey { .. } => "RegenerateLicenseKey",
            SubscriptionAction::VerifyLicenseKey { .. } => return None,
            SubscriptionAction::ActivateDevice(_) => "ActivateDevice",
            SubscriptionAction::DeactivateDevice { .. } => "DeactivateDevice",
            SubscriptionAction::DeactivateDeviceByFingerprint { .. } => {
                "DeactivateDeviceByFingerprint"
            }
            SubscriptionAction::UpdateDevice { .. } => "UpdateDevice",
            SubscriptionAction::IssueLicenseToken { .. } => "IssueLicenseToken",
            SubscriptionAction::VerifyLicenseToken { .. } => return None,
            SubscriptionAction::FollowPolicy { .. } => "FollowPolicy",
            SubscriptionAction::RecordDeadlines { .. } => "RecordDeadlines",
            SubscriptionAction::AttachEntitlements { .. } => "AttachEntitlements",
            SubscriptionAction::DetachEntitlements { .. } => "DetachEntitlements",
            SubscriptionAction::ExpireLeases => "ExpireLeases",
            SubscriptionAction::Heartbeat { .. } => "Heartbeat",
            SubscriptionAction::CheckIn { .. } => "CheckIn",
        })
    }
}

impl CommandName for AdminCommand {
    fn command_name(&self) -> Option<&'static str> {
        Some(match self {
            AdminCommand::CreateAdmin { .. } => "CreateAdmin",
            AdminCommand::ChangeRole { .. } => "ChangeRole",
            AdminCommand::ChangePassword { .. } => "ChangePassword",
            AdminCommand::DisableAdmin { .. } => "DisableAdmin",
        })
    }
}

impl CommandName for WebhookEndpointCommand {
    fn command_name(&self) -> Option<&'static str> {
        Some(match self {
            WebhookEndpointCommand::Create { .. } => "CreateWebhookEndpoint",
            WebhookEndpointCommand::Update { .. } => "UpdateWebhookEndpoint",
            WebhookEndpointCommand::RotateSecret { .. } => "RotateWebhookSecret",
            WebhookEndpointCommand::Disable { .. } => "DisableWebhookEndpoint",
            WebhookEndpointCommand::Enable { .. } => "EnableWebhookEndpoint",
            WebhookEndpointCommand::Delete { .. } => "DeleteWebhookEndpoint",
        })
    }
}

impl CommandName for ProductCommand {
    fn command_name(&self) -> Option<&'static str> {
        Some(match self {
            ProductCommand::Create { .. } => "CreateProduct",
            ProductCommand::Update { .. } => "UpdateProduct",
            ProductCommand::Delete { .. } => "DeleteProduct",
        })
    }
}

impl CommandName for EntitlementCommand {
    fn command_name(&self) -> Option<&'static str> {
        Some(match self {
            EntitlementCommand::Create { .. } => "CreateEntitlement",
            EntitlementCommand::Rename { .. } => "RenameEntitlement",
            EntitlementCommand::Delete { .. } => "DeleteEntitlement",
        })
    }
}

impl CommandName for PolicyCommand {
    fn command_name(&self) -> Option<&'static str> {
        Some(match self {
            PolicyCommand::Create { .. } => "CreatePolicy",
            PolicyCommand::Update { .. } => "UpdatePolicy",
            PolicyCommand::AttachEntitlements { .. } => "AttachPolicyEntitlements",
            PolicyCommand::DetachEntitlements { .. } => "DetachPolicyEntitlements",
            PolicyCommand::Archive { .. } => "ArchivePolicy",
            PolicyCommand::Unarchive { .. } => "UnarchivePolicy",
        })
    }
}
