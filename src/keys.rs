//! Ed25519 signing keys for JWTs: the license key pair kept on disk (generated on first run)
//! and the admin-token key derived from `SECRET_KEY`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use sha2::{Digest, Sha256};

use crate::crypto::random_bytes;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not an Ed25519 PKCS#8 PEM key")]
    Malformed { path: PathBuf },
    #[error("public key {path} does not match the private key")]
    Mismatch { path: PathBuf },
    #[error(
        "private key {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    ReadableByOthers { path: PathBuf, mode: u32 },
    /// A command that reads the server's keys found none: it must not make new ones (a
    /// vendor would ship a public key the server never signs with).
    #[error(
        "no {what} at {} (PRIVATE_KEY_PATH; relative paths start in the current directory): \
         `flowlytix serve` or `flowlytix migrate` creates it; run this command with the \
         server's environment, from its working directory",
        absolute(path).display()
    )]
    Missing { what: &'static str, path: PathBuf },
}

/// `path` as seen from the current directory, for messages about files that are not there.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// What to do when a key file is not there yet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    /// Generate it: what the server (and `migrate`) do on first run.
    Generate,
    /// Refuse: what the commands that read the server's keys do.
    Refuse,
}

/// One Ed25519 key pair ready for signing and verifying JWTs, with its JWK identity.
pub struct JwtKeys {
    /// Held parsed: jsonwebtoken's `EncodingKey` keeps the PKCS#8 bytes and parses them,
    /// deriving the public key again, on every signature (as much work as the signature
    /// itself, on every activation and token refresh).
    signing: SigningKey,
    /// The JWT header every token of this key carries (EdDSA, the kid), base64url-encoded.
    header: String,
    pub decoding: DecodingKey,
    /// RFC 7638 JWK thumbprint: stable for the key, changes when the key changes.
    pub kid: String,
    /// Raw public key, base64url: the JWK's `x`.
    pub public_x: String,
    pub public_pem: String,
}

impl JwtKeys {
    pub fn from_signing_key(signing_key: &SigningKey) -> Self {
        #[allow(clippy::expect_used)]
        let public_pem = signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key always encodes as SPKI");
        let public_x = URL_SAFE_NO_PAD.encode(signing_key.verifying_key().as_bytes());
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        #[allow(clippy::expect_used)]
        let header = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).expect("a JWT header always encodes as JSON"));
        #[allow(clippy::expect_used)]
        let decoding = DecodingKey::from_ed_components(&public_x)
            .expect("jsonwebtoken reads a base64url public key");
        Self {
            signing: signing_key.clone(),
            header,
            decoding,
            kid,
            public_x,
            public_pem,
        }
    }

    /// A compact JWS (header.claims.signature, RFC 7515) of `claims`, signed with EdDSA.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> Result<String, serde_json::Error> {
        let claims = serde_json::to_vec(claims)?;
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 90);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }

    /// A key derived from a secret, for tokens only this server (and its siblings sharing
    /// the secret) verifies. The label keeps the derived key apart from any other use.
    pub fn derive_from_secret(label: &str, secret: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update(secret);
        let seed: [u8; 32] = hasher.finalize().into();
        Self::from_signing_key(&SigningKey::from_bytes(&seed))
    }

    /// Loads the license key pair, generating it on first run: private key 0600, public 0644.
    /// With `strict_permissions`, a private key readable by group or others is refused.
    pub fn load_or_generate(
        private_path: &Path,
        public_path: &Path,
        strict_permissions: bool,
    ) -> Result<Self, KeyError> {
        Self::load(
            private_path,
            public_path,
            strict_permissions,
            IfMissing::Generate,
        )
    }

    /// Loads the license key pair; when it is missing, generates it or refuses.
    pub fn load(
        private_path: &Path,
        public_path: &Path,
        strict_permissions: bool,
        if_missing: IfMissing,
    ) -> Result<Self, KeyError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyError::Io { path, source }
        };
        let signing_key = if private_path.exists() {
            let mode = fs::metadata(private_path)
                .map_err(io(private_path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                let error = KeyError::ReadableByOthers {
                    path: private_path.to_owned(),
                    mode: mode & 0o777,
                };
                if strict_permissions {
                    return Err(error);
                }
                tracing::warn!("{error}");
            }
            let pem = fs::read_to_string(private_path).map_err(io(private_path))?;
            SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Malformed {
                path: private_path.to_owned(),
            })?
        } else if if_missing == IfMissing::Refuse {
            return Err(KeyError::Missing {
                what: "license signing key",
                path: private_path.to_owned(),
            });
        } else {
            let signing_key = SigningKey::from_bytes(&random_bytes::<32>());
            #[allow(clippy::expect_used)]
            let pem = signing_key
                .to_pkcs8_pem(LineEnding::LF)
                .expect("PKCS#8 encoding");
            write_new_file(private_path, pem.as_bytes(), 0o600).map_err(io(private_path))?;
            tracing::info!(path = %private_path.display(), "generated the license signing key");
            signing_key
        };
        let keys = Self::from_signing_key(&signing_key);
        if public_path.exists() {
            let on_disk = fs::read_to_string(public_path).map_err(io(public_path))?;
            if on_disk.trim() != keys.public_pem.trim() {
                return Err(KeyError::Mismatch {
                    path: public_path.to_owned(),
                });
            }
        } else if if_missing == IfMissing::Generate {
            write_new_file(public_path, keys.public_pem.as_bytes(), 0o644)
                .map_err(io(public_path))?;
        }
        Ok(keys)
    }
}

/// The server's secret, from which admin tokens, sealed webhook secrets and idempotency
/// records derive their keys: `SECRET_KEY`, or in development without it a random secret
/// kept beside the signing key, so that sign-ins survive a restart. (Production refuses to
/// start without `SECRET_KEY`.)
pub fn server_secret(
    secret_key: Option<&secrecy::SecretString>,
    private_key_path: &Path,
    if_missing: IfMissing,
) -> Result<Vec<u8>, KeyError> {
    use secrecy::ExposeSecret;
    match secret_key {
        Some(secret) => Ok(secret.expose_secret().as_bytes().to_vec()),
        None => load_secret(
            &private_key_path.with_file_name("admin_token_secret"),
            if_missing,
        ),
    }
}

/// A 256-bit secret read from `path`, or generated there (mode 0600) on first use.
fn load_secret(path: &Path, if_missing: IfMissing) -> Result<Vec<u8>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.exists() && if_missing == IfMissing::Refuse {
        return Err(KeyError::Missing {
            what: "admin token secret (SECRET_KEY is unset)",
            path: path.to_owned(),
        });
    }
    if path.exists() {
        let secret = fs::read(path).map_err(io)?;
        if secret.len() < 32 {
            return Err(KeyError::Malformed {
                path: path.to_owned(),
            });
        }
        return Ok(secret);
    }
    let secret = random_bytes::<32>().to_vec();
    write_new_file(path, &secret, 0o600).map_err(io)?;
    tracing::info!(path = %path.display(), "generated the admin token secret (set SECRET_KEY to choose one)");
    Ok(secret)
}

fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(contents)?;
    // The umask may have removed bits from `mode` (never added any): set it exactly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flowlytix-keys-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Keys written by an earlier build (its PKCS#8 private key and SPKI public key) load,
    /// with the key id that build announced, and sign tokens the public key verifies.
    #[test]
    fn a_key_pair_written_by_an_earlier_build_loads_with_the_same_key_id() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/license-key-2026-12-07");
        let dir = temp_dir();
        for name in ["private.pem", "public.pem"] {
            fs::copy(fixture.join(name), dir.join(name)).unwrap();
        }
        let keys =
            JwtKeys::load_or_generate(&dir.join("private.pem"), &dir.join("public.pem"), false)
                .unwrap();
        assert_eq!(keys.kid, "i2KMi8cjTmy-O-2vDywjDpukg0zgFAW0--AiayKAjYY");
        assert_eq!(
            keys.public_pem,
            fs::read_to_string(fixture.join("public.pem")).unwrap()
        );
        let token = keys
            .sign(&serde_json::json!({"sub": "device", "exp": 4_102_444_800_i64}))
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        let decoding = DecodingKey::from_ed_pem(keys.public_pem.as_bytes()).unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_token_signed_here_is_the_one_jsonwebtoken_would_make() {
        let keys = JwtKeys::derive_from_secret("test", b"a secret of the test");
        let claims = serde_json::json!({"sub": "device", "exp": 4_102_444_800_i64});
        let token = keys.sign(&claims).unwrap();
        // Ed25519 signatures are deterministic: the same header, claims and key give the
        // same token, byte for byte.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.kid.clone());
        let private_pem = keys.signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
        assert_eq!(
            token,
            jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
        );
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, &keys.decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
    }

    #[test]
    fn keys_are_generated_with_modes_and_reused() {
        let dir = temp_dir();
        let (private, public) = (dir.join("k/private.pem"), dir.join("k/public.pem"));
        let first = JwtKeys::load_or_generate(&private, &public, true).unwrap();
        assert_eq!(
            fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&public).unwrap().permissions().mode() & 0o777,
            0o644
        );
        let second = JwtKeys::load_or_generate(&private, &public, true).unwrap();
        assert_eq!(first.kid, second.kid);
        assert!(first.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn a_private_key_readable_by_others_is_refused_when_strict() {
        let dir = temp_dir();
        let (private, public) = (dir.join("private.pem"), dir.join("public.pem"));
        JwtKeys::load_or_generate(&private, &public, true).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o644)).unwrap();
        let err = JwtKeys::load_or_generate(&private, &public, true)
            .err()
            .unwrap();
        assert!(
            matches!(err, KeyError::ReadableByOthers { mode: 0o644, .. }),
            "{err}"
        );
        assert!(JwtKeys::load_or_generate(&private, &public, false).is_ok());
    }

    #[test]
    fn a_reader_of_the_keys_never_generates_them() {
        let dir = temp_dir();
        let (private, public) = (dir.join("private.pem"), dir.join("public.pem"));
        let refused = JwtKeys::load(&private, &public, true, IfMissing::Refuse);
        assert!(
            matches!(refused, Err(KeyError::Missing { .. })),
            "a missing key is refused"
        );
        let refused = server_secret(None, &private, IfMissing::Refuse);
        assert!(matches!(refused, Err(KeyError::Missing { .. })));
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing was written"
        );
        let made = JwtKeys::load_or_generate(&private, &public, true).unwrap();
        let read = JwtKeys::load(&private, &public, true, IfMissing::Refuse).unwrap();
        assert_eq!(made.kid, read.kid);
    }

    #[test]
    fn a_foreign_public_key_is_refused() {
        let dir = temp_dir();
        let other = temp_dir();
        JwtKeys::load_or_generate(&other.join("a"), &other.join("b"), true).unwrap();
        fs::copy(other.join("b"), dir.join("public.pem")).unwrap();
        let err =
            JwtKeys::load_or_generate(&dir.join("private.pem"), &dir.join("public.pem"), true);
        assert!(matches!(err, Err(KeyError::Mismatch { .. })));
    }

    #[test]
    fn derived_keys_depend_on_label_and_secret() {
        let a = JwtKeys::derive_from_secret("admin", b"s1");
        assert_eq!(a.kid, JwtKeys::derive_from_secret("admin", b"s1").kid);
        assert_ne!(a.kid, JwtKeys::derive_from_secret("admin", b"s2").kid);
        assert_ne!(a.kid, JwtKeys::derive_from_secret("other", b"s1").kid);
    }
}
