//! The server's public keys an app trusts: pinned (compiled in or read from a file the app
//! ships), never fetched and believed on the spot, so that a server impersonated on the
//! network cannot hand the app its own key.

use std::collections::BTreeMap;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// The verification keys by key id (`kid`), from the server's JWKS
/// (`/.well-known/jwks.json`).
pub struct PinnedKeys {
    keys: BTreeMap<String, DecodingKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("the key set is not a JWKS (JSON with a \"keys\" list)")]
    NotAKeySet,
    #[error("key {0} is not an Ed25519 (OKP) signing key")]
    NotEd25519(String),
    #[error("the key set holds no key")]
    Empty,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    kid: String,
}

impl PinnedKeys {
    /// The keys of a JWKS document. Every key must be an Ed25519 public key with a `kid`:
    /// a set that holds anything else is refused whole rather than half trusted.
    pub fn from_jwks(json: &str) -> Result<Self, KeysError> {
        let set: KeySet = serde_json::from_str(json).map_err(|_| KeysError::NotAKeySet)?;
        let mut keys = BTreeMap::new();
        for jwk in set.keys {
            let ed25519 = jwk.kty == "OKP" && jwk.crv.as_deref() == Some("Ed25519");
            let key = jwk
                .x
                .filter(|_| ed25519)
                .and_then(|x| DecodingKey::from_ed_components(&x).ok())
                .ok_or_else(|| KeysError::NotEd25519(jwk.kid.clone()))?;
            keys.insert(jwk.kid, key);
        }
        if keys.is_empty() {
            return Err(KeysError::Empty);
        }
        Ok(Self { keys })
    }

    /// The key with this id, if it is pinned.
    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    /// The pinned key ids.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}
