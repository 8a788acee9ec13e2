//! Webhook signing secrets: made here, shown once, and stored only sealed.
//!
//! A secret is `whsec_` + base64 of 32 random bytes (the Standard Webhooks format). What the
//! events keep is `sealed:v1:` + base64(nonce ‖ XChaCha20-Poly1305 ciphertext), under a key
//! derived from the server's secret (`SECRET_KEY`) with HKDF-SHA256 and a label of its own,
//! and bound to its endpoint's id (the associated data), so a database reader can neither
//! sign nor move a sealed secret to another endpoint.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flowlytix_aggregates::webhook_endpoint::{SealedSecret, SEALED_PREFIX};
use flowlytix_aggregates::WebhookEndpointId;
use secrecy::{SecretBox, SecretString};

use crate::crypto::random_bytes;
use crate::crypto::seal::{Sealer, NONCE_LEN};

const KEY_LABEL: &[u8] = b"flowlytix webhook signing secrets v1";
pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the sealed signing secret cannot be opened with this server's SECRET_KEY (was it changed?); rotate the endpoint's secret")]
    CannotOpen,
}

/// A fresh signing secret: the text shown to the admin once, and its key bytes.
pub struct NewSecret {
    pub shown: SecretString,
    pub sealed: SealedSecret,
}

/// Seals and opens signing secrets with the server's webhook key.
pub struct SecretBoxKey {
    sealer: Sealer,
}

impl SecretBoxKey {
    pub fn derive(server_secret: &[u8]) -> Self {
        Self {
            sealer: Sealer::derive(server_secret, KEY_LABEL),
        }
    }

    /// A new random secret for `endpoint`, sealed.
    pub fn generate(&self, endpoint: WebhookEndpointId) -> NewSecret {
        let key = random_bytes::<32>();
        let shown = SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key)));
        let sealed = self.seal(endpoint, &key);
        NewSecret { shown, sealed }
    }

    fn seal(&self, endpoint: WebhookEndpointId, key: &[u8; 32]) -> SealedSecret {
        let (mut sealed, ciphertext) = self.sealer.seal(key, endpoint.as_uuid().as_bytes());
        sealed.extend_from_slice(&ciphertext);
        SealedSecret::parse(&format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
            .unwrap_or_else(|_| unreachable!("a sealed secret has the sealed shape"))
    }

    /// The signing key bytes of `endpoint`'s sealed secret.
    pub fn open(
        &self,
        endpoint: WebhookEndpointId,
        sealed: &SealedSecret,
    ) -> Result<SecretBox<[u8]>, SecretError> {
        let encoded = sealed
            .as_str()
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::CannotOpen)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::CannotOpen)?;
        if bytes.len() <= NONCE_LEN {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let key = self
            .sealer
            .open(nonce, ciphertext, endpoint.as_uuid().as_bytes())
            .map_err(|_| SecretError::CannotOpen)?;
        Ok(SecretBox::new(key.into_boxed_slice()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secrecy::ExposeSecret;
    use uuid::Uuid;

    /// The key bytes of a shown secret, as a receiver decodes them.
    fn key_of_shown(shown: &SecretString) -> Option<Vec<u8>> {
        let encoded = shown.expose_secret().strip_prefix(SECRET_PREFIX)?;
        STANDARD.decode(encoded).ok()
    }

    fn endpoint(n: u128) -> WebhookEndpointId {
        WebhookEndpointId(Uuid::from_u128(n))
    }

    #[test]
    fn a_sealed_secret_opens_to_the_shown_key_with_the_same_server_secret_only() {
        let key = SecretBoxKey::derive(b"server secret one");
        let new = key.generate(endpoint(1));
        assert!(new.shown.expose_secret().starts_with("whsec_"));
        let bytes = key_of_shown(&new.shown).unwrap();
        assert_eq!(bytes.len(), 32);
        let opened = key.open(endpoint(1), &new.sealed).unwrap();
        assert_eq!(opened.expose_secret(), bytes.as_slice());
        // Nothing of the key is readable in the sealed form.
        assert!(!new.sealed.as_str().contains(&STANDARD.encode(&bytes)));
        let other_server = SecretBoxKey::derive(b"server secret two");
        assert!(other_server.open(endpoint(1), &new.sealed).is_err());
    }

    #[test]
    fn a_sealed_secret_is_bound_to_its_endpoint() {
        let key = SecretBoxKey::derive(b"server secret");
        let new = key.generate(endpoint(1));
        assert!(key.open(endpoint(2), &new.sealed).is_err());
    }

    #[test]
    fn every_secret_and_every_seal_is_fresh() {
        let key = SecretBoxKey::derive(b"server secret");
        let a = key.generate(endpoint(1));
        let b = key.generate(endpoint(1));
        assert_ne!(a.shown.expose_secret(), b.shown.expose_secret());
        assert_ne!(a.sealed, b.sealed);
    }

    /// A secret sealed by an earlier build (the fixture log's endpoint, sealed under the
    /// fixture server's `SECRET_KEY`) still opens: a change of the AEAD crate or of the key
    /// derivation must not strand the secrets already in the log.
    #[test]
    fn a_secret_sealed_by_an_earlier_build_still_opens() {
        let log: Vec<serde_json::Value> = serde_json::from_str(include_str!(
            "../../aggregates/fixtures/event-log-2026-12-07.json"
        ))
        .unwrap();
        let created = log
            .iter()
            .find(|row| row["event_type"] == "WebhookEndpointCreated")
            .unwrap();
        let payload: serde_json::Value =
            serde_json::from_str(created["payload"].as_str().unwrap()).unwrap();
        let sealed = SealedSecret::parse(
            payload["WebhookEndpointCreated"]["sealed_secret"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let id = WebhookEndpointId(created["aggregate_id"].as_str().unwrap().parse().unwrap());
        let key = SecretBoxKey::derive(b"fixture-secret-key-0123456789abcdef0123456789");
        assert_eq!(key.open(id, &sealed).unwrap().expose_secret().len(), 32);
        assert!(SecretBoxKey::derive(b"another secret")
            .open(id, &sealed)
            .is_err());
    }
}
