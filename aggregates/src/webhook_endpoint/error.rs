/// Why a webhook endpoint refused a command. Each variant maps to one stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookEndpointError {
    #[error("the webhook endpoint does not exist")]
    NotFound,
    #[error("the webhook endpoint already exists")]
    AlreadyExists,
    #[error("the webhook endpoint was deleted")]
    Deleted,
    #[error("url must be an absolute http or https URL of at most {max} characters")]
    InvalidUrl { max: usize },
    #[error("unknown event type {0:?}; use the names the event feed shows")]
    UnknownEventType(String),
    #[error("event_types lists at most {max} event types, each once")]
    InvalidEventTypes { max: usize },
    #[error("description must be at most {max} characters, without control characters")]
    InvalidDescription { max: usize },
}
