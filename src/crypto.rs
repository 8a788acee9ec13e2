//! Small cryptographic helpers: hashing, CSPRNG bytes, password hashing, sealing (seal.rs).

pub mod seal;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flowlytix_aggregates::license_key::{LicenseKey, ENTROPY_BYTES};
use flowlytix_aggregates::Sha256Hex;
use sha2::{Digest, Sha256};

/// SHA-256 as lowercase hex: how license keys, fingerprints and refresh tokens are stored.
pub fn sha256_hex(data: impl AsRef<[u8]>) -> Sha256Hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data.as_ref());
    // By table, not `format!` per byte: every validate request hashes twice.
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    Sha256Hex::parse(&hex).unwrap_or_else(|_| unreachable!("64 lowercase hex characters"))
}

/// Bytes from the operating system's CSPRNG. Failing to read it is not recoverable.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    bytes
}

/// A fresh license key with 150 bits from the OS CSPRNG, drawn again until its check symbol
/// catches every adjacent swap (about 6% of draws are not; the entropy lost is under 0.1 bit).
pub fn new_license_key() -> LicenseKey {
    loop {
        let key = LicenseKey::from_entropy(random_bytes::<ENTROPY_BYTES>());
        if key.catches_every_adjacent_swap() {
            return key;
        }
    }
}

/// An opaque bearer secret (refresh tokens): 256 bits, base64url.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// Hashes a password with argon2id (the crate's default parameters, OWASP's baseline).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks a password against a PHC hash; argon2's comparison is constant-time.
pub fn verify_password(password: &str, phc_hash: &str) -> bool {
    PasswordHash::new(phc_hash)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn license_keys_are_fresh_and_parse_back() {
        let a = new_license_key();
        assert_ne!(a, new_license_key());
        assert_eq!(LicenseKey::parse(a.expose()).unwrap(), a);
    }

    #[test]
    fn new_license_keys_catch_every_adjacent_swap() {
        for _ in 0..2000 {
            assert!(new_license_key().catches_every_adjacent_swap());
        }
    }
}
