//! Sealing what a reader of the database must not read (remembered `Idempotency-Key`
//! answers, which can hold a license key or token; webhook signing secrets):
//! XChaCha20-Poly1305 (random 192-bit nonces are safe at any volume) under a key derived
//! from the server's secret with HKDF-SHA256 and a label per use, so one use's key opens
//! nothing of another's. Each caller binds what it seals to its row with associated data.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

use super::random_bytes;

pub const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
#[error("a sealed value cannot be opened with this server's secret (was SECRET_KEY changed?)")]
pub struct OpenError;

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// From the same secret the admin access tokens are derived from (`SECRET_KEY`, or the
    /// generated development secret), under `label`, one per use.
    pub fn derive(secret: &[u8], label: &[u8]) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(None, secret)
            .expand(label, &mut key)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// `(nonce, ciphertext)` of `plaintext`, bound to `associated`.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let nonce = random_bytes::<NONCE_LEN>();
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .unwrap_or_else(|_| {
                unreachable!("XChaCha20-Poly1305 seals any message a server holds")
            });
        (nonce.to_vec(), sealed)
    }

    pub fn open(
        &self,
        nonce: &[u8],
        sealed: &[u8],
        associated: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError)?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: associated,
                },
            )
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LABEL: &[u8] = b"a test's label";

    #[test]
    fn another_label_derives_another_key() {
        let (nonce, sealed) = Sealer::derive(b"secret", LABEL).seal(b"text", b"row");
        assert!(Sealer::derive(b"secret", b"another label")
            .open(&nonce, &sealed, b"row")
            .is_err());
    }

    #[test]
    fn a_sealed_body_opens_only_with_its_secret_and_associated_data() {
        let sealer = Sealer::derive(b"secret one", LABEL);
        let (nonce, sealed) = sealer.seal(b"FLX-SECRET", b"row-1");
        assert!(!sealed.windows(10).any(|w| w == b"FLX-SECRET"));
        assert_eq!(
            sealer.open(&nonce, &sealed, b"row-1").unwrap(),
            b"FLX-SECRET"
        );
        assert!(sealer.open(&nonce, &sealed, b"row-2").is_err());
        let other = Sealer::derive(b"secret two", LABEL);
        assert!(other.open(&nonce, &sealed, b"row-1").is_err());
        let mut tampered = sealed.clone();
        tampered[0] ^= 1;
        assert!(sealer.open(&nonce, &tampered, b"row-1").is_err());
    }

    #[test]
    fn every_seal_gets_a_fresh_nonce() {
        let sealer = Sealer::derive(b"secret", LABEL);
        let (a, _) = sealer.seal(b"same", b"row");
        let (b, _) = sealer.seal(b"same", b"row");
        assert_ne!(a, b);
    }
}
