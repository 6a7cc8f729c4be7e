//! Credentials kept in the database are encrypted with `SECRET_KEY`.
//!
//! A value is sealed with XChaCha20-Poly1305 under a random 24-byte nonce, bound to the column
//! it belongs in (the column's name is the associated data, so a value moved to another column
//! does not open), and stored as text:
//!
//! ```text
//! enc:v1:<key id>:<base64(nonce || ciphertext)>
//! ```
//!
//! The key id is the first 8 hex digits of the key's SHA-256: it picks the key a value opens
//! with, and shows which values still need sealing under a new key after a rotation
//! (`SECRET_KEY_PREVIOUS` holds the old keys, used only to open). A value without the `enc:`
//! prefix is plain text stored before encryption existed.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Digest;

/// How a sealed value starts; anything else is legacy plain text.
const PREFIX: &str = "enc:";
/// The current format.
const VERSION: &str = "v1";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// The hint every key error gives.
pub const HOW_TO_MAKE_A_KEY: &str = "make one with `openssl rand -base64 32`";

/// Base64 with or without its `=` padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A 32-byte key. Neither `Debug` nor errors ever show it, only its id.
#[derive(Clone)]
pub struct SecretKey {
    bytes: SecretSlice<u8>,
    /// The key as it was given (base64 or hex), for the redactor.
    text: SecretString,
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// A key given as base64 (standard alphabet, padded or not) or as 64 hex digits. The error
    /// says what is wrong without repeating the value.
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| e.to_string())?
        } else {
            LENIENT_BASE64
                .decode(text)
                .map_err(|_| "is neither base64 nor 64 hex digits".to_string())?
        };
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "must be {KEY_LEN} bytes, got {} (as base64 or 64 hex digits)",
                bytes.len()
            ));
        }
        Ok(SecretKey::from_bytes(bytes, text))
    }

    fn from_bytes(bytes: Vec<u8>, text: &str) -> SecretKey {
        let id = hex::encode(&sha2::Sha256::digest(&bytes)[..4]);
        SecretKey {
            bytes: SecretSlice::from(bytes),
            text: SecretString::from(text.to_string()),
            id,
        }
    }

    /// A new random key (for tests and examples).
    pub fn generate() -> SecretKey {
        let mut bytes = vec![0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        let text = STANDARD.encode(&bytes);
        SecretKey::from_bytes(bytes, &text)
    }

    /// The first 8 hex digits of the key's SHA-256, stored with every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The ways the key may be written, for masking in logs: as given, base64 and hex.
    pub fn spellings(&self) -> Vec<String> {
        let bytes = self.bytes.expose_secret();
        vec![
            self.text.expose_secret().to_string(),
            STANDARD.encode(bytes),
            hex::encode(bytes),
        ]
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new_from_slice(self.bytes.expose_secret())
            .expect("a SecretKey is 32 bytes")
    }

    /// Encrypt `plain` for `column`: `enc:v1:<key id>:<base64(nonce || ciphertext)>`.
    pub fn seal(&self, column: &str, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: column.as_bytes(),
                },
            )
            .expect("a credential is far below the cipher's length limit");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{VERSION}:{}:{}", self.id, STANDARD.encode(bytes))
    }
}

/// Why a stored value cannot be opened. Names the column and key ids, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Sealed under a key that is neither `SECRET_KEY` nor in `SECRET_KEY_PREVIOUS`.
    UnknownKey {
        column: String,
        key_id: String,
        configured: Vec<String>,
    },
    /// The key is known but the value does not open: altered, or moved from another column.
    Rejected { column: String, key_id: String },
    /// Starts like a sealed value but is not one this version reads.
    Malformed { column: String },
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::UnknownKey {
                column,
                key_id,
                configured,
            } => {
                write!(
                    f,
                    "the stored {column} is encrypted with key {key_id}, which is neither \
                     SECRET_KEY nor in SECRET_KEY_PREVIOUS ("
                )?;
                if configured.is_empty() {
                    write!(f, "no key is configured")?;
                } else {
                    write!(f, "configured: {}", configured.join(", "))?;
                }
                write!(
                    f,
                    "); set SECRET_KEY to the key it was stored with, or that key in \
                     SECRET_KEY_PREVIOUS during a rotation"
                )
            }
            SealError::Rejected { column, key_id } => write!(
                f,
                "the stored {column} does not decrypt with key {key_id}: it was altered or \
                 copied from another column"
            ),
            SealError::Malformed { column } => write!(
                f,
                "the stored {column} starts with {PREFIX:?} but is not a value sealed in the \
                 {PREFIX}{VERSION} format"
            ),
        }
    }
}

impl std::error::Error for SealError {}

/// What a stored value opened to.
pub struct Opened {
    pub plain: SecretString,
    /// The key it was sealed with; `None` for legacy plain text.
    pub key_id: Option<String>,
}

/// `SECRET_KEY` (seals and opens) and `SECRET_KEY_PREVIOUS` (only opens).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub current: Option<SecretKey>,
    pub previous: Vec<SecretKey>,
}

impl Keyring {
    fn keys(&self) -> impl Iterator<Item = &SecretKey> {
        self.current.iter().chain(&self.previous)
    }

    /// Open a stored value: plain text as it is, a sealed one with the key its id names.
    pub fn open(&self, column: &str, stored: &str) -> Result<Opened, SealError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(Opened {
                plain: SecretString::from(stored.to_string()),
                key_id: None,
            });
        };
        let malformed = || SealError::Malformed {
            column: column.to_string(),
        };
        let mut parts = rest.splitn(3, ':');
        let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let bytes = STANDARD.decode(body).map_err(|_| malformed())?;
        if bytes.len() < NONCE_LEN {
            return Err(malformed());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| malformed())?;
        let mut candidates = self.keys().filter(|k| k.id == key_id).peekable();
        if candidates.peek().is_none() {
            return Err(SealError::UnknownKey {
                column: column.to_string(),
                key_id: key_id.to_string(),
                configured: self.keys().map(|k| k.id.clone()).collect(),
            });
        }
        // Two keys may share an id (one chance in four billion): try each.
        for key in candidates {
            if let Ok(plain) = key.cipher().decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: column.as_bytes(),
                },
            ) {
                let plain = String::from_utf8(plain).map_err(|_| malformed())?;
                return Ok(Opened {
                    plain: SecretString::from(plain),
                    key_id: Some(key_id.to_string()),
                });
            }
        }
        Err(SealError::Rejected {
            column: column.to_string(),
            key_id: key_id.to_string(),
        })
    }

    /// Whether `stored` should be sealed again: plain text, or sealed under another key than
    /// `SECRET_KEY`. Always false without `SECRET_KEY`.
    pub fn needs_sealing(&self, stored: &str) -> bool {
        match &self.current {
            None => false,
            Some(key) => !stored.starts_with(&format!("{PREFIX}{VERSION}:{}:", key.id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(current: &SecretKey, previous: &[&SecretKey]) -> Keyring {
        Keyring {
            current: Some(current.clone()),
            previous: previous.iter().map(|k| (*k).clone()).collect(),
        }
    }

    fn open(ring: &Keyring, column: &str, stored: &str) -> Result<String, SealError> {
        ring.open(column, stored)
            .map(|o| o.plain.expose_secret().to_string())
    }

    #[test]
    fn a_sealed_value_opens_to_what_was_sealed() {
        let key = SecretKey::generate();
        let sealed = key.seal("github_app.webhook_secret", "hunter2-webhook");
        assert!(
            sealed.starts_with(&format!("enc:v1:{}:", key.id())),
            "{sealed}"
        );
        assert!(!sealed.contains("hunter2"));
        let opened = ring(&key, &[])
            .open("github_app.webhook_secret", &sealed)
            .unwrap();
        assert_eq!(opened.plain.expose_secret(), "hunter2-webhook");
        assert_eq!(opened.key_id.as_deref(), Some(key.id()));
        // A random nonce each time: the same value never seals the same way twice.
        assert_ne!(
            sealed,
            key.seal("github_app.webhook_secret", "hunter2-webhook")
        );
    }

    #[test]
    fn another_key_does_not_open_it() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let sealed = key.seal("github_app.private_key", "pem");
        let err = open(&ring(&other, &[]), "github_app.private_key", &sealed).unwrap_err();
        assert_eq!(
            err,
            SealError::UnknownKey {
                column: "github_app.private_key".into(),
                key_id: key.id().into(),
                configured: vec![other.id().into()],
            }
        );
        let text = err.to_string();
        assert!(text.contains("SECRET_KEY_PREVIOUS"), "{text}");
        assert!(text.contains(key.id()), "{text}");
        // Another key that happens to carry the same id does not open it either.
        let mut impostor = other.clone();
        impostor.id = key.id().to_string();
        assert_eq!(
            open(&ring(&impostor, &[]), "github_app.private_key", &sealed).unwrap_err(),
            SealError::Rejected {
                column: "github_app.private_key".into(),
                key_id: key.id().into()
            }
        );
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let key = SecretKey::generate();
        let sealed = key.seal("github_app.client_secret", "client-secret-value");
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = STANDARD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}:{}", STANDARD.encode(&bytes));
        assert!(matches!(
            open(&ring(&key, &[]), "github_app.client_secret", &tampered),
            Err(SealError::Rejected { .. })
        ));
        bytes[last] ^= 1;
        bytes[NONCE_LEN] ^= 0x80;
        let tampered = format!("{head}:{}", STANDARD.encode(&bytes));
        assert!(matches!(
            open(&ring(&key, &[]), "github_app.client_secret", &tampered),
            Err(SealError::Rejected { .. })
        ));
        for broken in [
            format!("{head}:not base64!"),
            format!("{head}:{}", STANDARD.encode([0u8; 10])),
            "enc:v2:abcd1234:AAAA".to_string(),
            "enc:v1".to_string(),
        ] {
            assert!(
                matches!(
                    open(&ring(&key, &[]), "github_app.client_secret", &broken),
                    Err(SealError::Malformed { .. })
                ),
                "{broken}"
            );
        }
    }

    #[test]
    fn a_value_moved_to_another_column_does_not_open() {
        let key = SecretKey::generate();
        let sealed = key.seal("github_app.webhook_secret", "the-webhook-secret");
        let err = open(&ring(&key, &[]), "github_app.client_secret", &sealed).unwrap_err();
        assert!(matches!(err, SealError::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("another column"));
    }

    #[test]
    fn rotation_opens_with_the_old_key_and_seals_with_the_new() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let stored = old.seal("github_app.private_key", "the-pem");
        let keys = ring(&new, &[&old]);
        assert!(keys.needs_sealing(&stored));
        let opened = keys.open("github_app.private_key", &stored).unwrap();
        assert_eq!(opened.plain.expose_secret(), "the-pem");
        assert_eq!(opened.key_id.as_deref(), Some(old.id()));
        let resealed = keys
            .current
            .as_ref()
            .unwrap()
            .seal("github_app.private_key", opened.plain.expose_secret());
        assert!(resealed.starts_with(&format!("enc:v1:{}:", new.id())));
        assert!(!keys.needs_sealing(&resealed));
        // Once the old key is dropped, only the resealed value opens.
        let only_new = ring(&new, &[]);
        assert_eq!(
            open(&only_new, "github_app.private_key", &resealed).unwrap(),
            "the-pem"
        );
        assert!(open(&only_new, "github_app.private_key", &stored).is_err());
    }

    #[test]
    fn plain_text_from_before_is_read_as_it_is_and_sealed_when_a_key_is_set() {
        let stored = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----";
        let opened = Keyring::default()
            .open("github_app.private_key", stored)
            .unwrap();
        assert_eq!(opened.plain.expose_secret(), stored);
        assert_eq!(opened.key_id, None);
        assert!(!Keyring::default().needs_sealing(stored));
        assert!(ring(&SecretKey::generate(), &[]).needs_sealing(stored));
    }

    #[test]
    fn keys_are_read_as_base64_or_hex() {
        let bytes: Vec<u8> = (0u8..32).collect();
        let padded = STANDARD.encode(&bytes);
        assert!(padded.ends_with('='));
        let ids: Vec<String> = [
            padded.clone(),
            padded.trim_end_matches('=').to_string(),
            format!("  {padded}\n"),
            hex::encode(&bytes),
            hex::encode_upper(&bytes),
        ]
        .iter()
        .map(|text| SecretKey::parse(text).unwrap().id().to_string())
        .collect();
        assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
        assert_eq!(ids[0], hex::encode(&sha2::Sha256::digest(&bytes)[..4]));
        assert_eq!(ids[0].len(), 8);

        assert_eq!(
            SecretKey::parse(&STANDARD.encode([7u8; 16])).unwrap_err(),
            "must be 32 bytes, got 16 (as base64 or 64 hex digits)"
        );
        assert_eq!(
            SecretKey::parse("correct horse battery staple").unwrap_err(),
            "is neither base64 nor 64 hex digits"
        );
        assert!(SecretKey::parse(&"g".repeat(64)).is_err());
    }

    #[test]
    fn a_key_is_never_printed() {
        let key = SecretKey::parse(&hex::encode([0xabu8; 32])).unwrap();
        let debug = format!("{key:?} {:?}", ring(&key, &[&key]));
        assert!(!debug.contains("abab"), "{debug}");
        assert!(debug.contains(key.id()));
        let spellings = key.spellings();
        assert!(spellings.contains(&hex::encode([0xabu8; 32])));
        assert!(spellings.contains(&STANDARD.encode([0xabu8; 32])));
    }
}
