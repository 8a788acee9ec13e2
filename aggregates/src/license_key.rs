//! License key format: `FLX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-C`.
//!
//! Thirty Crockford base32 symbols carry 150 bits of entropy (the caller supplies the random
//! bytes, from the OS CSPRNG), grouped by five for humans, then one check symbol (Luhn mod 32)
//! so that a mistyped symbol or a swap of two neighbours is rejected before any lookup.
//! Crockford's alphabet has no I, L, O or U; on input those are read as 1, 1, 0 and rejected.

use std::fmt;

/// Random bytes needed to build a key (150 of their 152 bits are used).
pub const ENTROPY_BYTES: usize = 19;

const PREFIX: &str = "FLX";
const GROUPS: usize = 6;
const GROUP_LEN: usize = 5;
const BODY_LEN: usize = GROUPS * GROUP_LEN;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LicenseKeyError {
    #[error("a license key looks like FLX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-C")]
    Malformed,
    #[error("the license key's check character does not match: it was mistyped")]
    BadCheckCharacter,
}

/// A well-formed license key in canonical form. Its `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct LicenseKey(String);

impl LicenseKey {
    /// Builds a key from CSPRNG output.
    pub fn from_entropy(entropy: [u8; ENTROPY_BYTES]) -> Self {
        let mut bits: u32 = 0;
        let mut bit_count = 0;
        let mut bytes = entropy.iter();
        let mut body = Vec::with_capacity(BODY_LEN);
        while body.len() < BODY_LEN {
            if bit_count < 5 {
                let byte = bytes.next().copied().unwrap_or(0);
                bits = (bits << 8) | u32::from(byte);
                bit_count += 8;
            }
            bit_count -= 5;
            body.push(((bits >> bit_count) & 0x1f) as u8);
        }
        Self::from_symbols(&body)
    }

    /// Parses user input: case-insensitive, dashes and spaces optional, Crockford aliases
    /// accepted; the check character must match.
    pub fn parse(raw: &str) -> Result<Self, LicenseKeyError> {
        if raw.len() > 128 {
            return Err(LicenseKeyError::Malformed);
        }
        let compact: String = raw
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let rest = compact
            .strip_prefix(PREFIX)
            .ok_or(LicenseKeyError::Malformed)?;
        if rest.len() != BODY_LEN + 1 {
            return Err(LicenseKeyError::Malformed);
        }
        let symbols: Vec<u8> = rest
            .bytes()
            .map(symbol_value)
            .collect::<Option<_>>()
            .ok_or(LicenseKeyError::Malformed)?;
        let (body, check) = symbols.split_at(BODY_LEN);
        if check_symbol(body) != check[0] {
            return Err(LicenseKeyError::BadCheckCharacter);
        }
        Ok(Self::from_symbols(body))
    }

    fn from_symbols(body: &[u8]) -> Self {
        let mut key = String::from(PREFIX);
        for group in body.chunks(GROUP_LEN) {
            key.push('-');
            key.extend(group.iter().map(|v| char::from(ALPHABET[usize::from(*v)])));
        }
        key.push('-');
        key.push(char::from(ALPHABET[usize::from(check_symbol(body))]));
        Self(key)
    }

    /// The canonical text, to show once and to hash. Handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The part that may be shown again to identify the key: `FLX-XXXXX`.
    pub fn display_prefix(&self) -> String {
        self.0[..PREFIX.len() + 1 + GROUP_LEN].to_owned()
    }
}

impl fmt::Debug for LicenseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenseKey({}-…)", self.display_prefix())
    }
}

fn symbol_value(c: u8) -> Option<u8> {
    let c = match c {
        b'O' => b'0',
        b'I' | b'L' => b'1',
        other => other,
    };
    ALPHABET.iter().position(|a| *a == c).map(|p| p as u8)
}

/// Luhn mod N over base-32 symbols: catches every single-symbol error and every swap of
/// two different adjacent symbols.
fn check_symbol(body: &[u8]) -> u8 {
    const N: u32 = 32;
    let mut sum = 0;
    let mut double = true;
    for value in body.iter().rev() {
        let mut addend = u32::from(*value);
        if double {
            addend *= 2;
            addend = addend / N + addend % N;
        }
        sum += addend;
        double = !double;
    }
    ((N - sum % N) % N) as u8
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(seed: u8) -> LicenseKey {
        let mut entropy = [0u8; ENTROPY_BYTES];
        for (i, b) in entropy.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8 * 7);
        }
        LicenseKey::from_entropy(entropy)
    }

    #[test]
    fn a_key_has_the_grouped_shape() {
        let k = key(1);
        let parts: Vec<&str> = k.expose().split('-').collect();
        assert_eq!(parts.len(), 8);
        assert_eq!(parts[0], "FLX");
        assert!(parts[1..7].iter().all(|g| g.len() == 5));
        assert_eq!(parts[7].len(), 1);
        assert_eq!(k.display_prefix(), format!("FLX-{}", parts[1]));
    }

    #[test]
    fn entropy_reaches_the_key() {
        let a = LicenseKey::from_entropy([0u8; ENTROPY_BYTES]);
        let mut last_bit = [0u8; ENTROPY_BYTES];
        last_bit[18] = 0b0000_0100; // bit 150 of 152: the last one used
        assert_ne!(a, LicenseKey::from_entropy(last_bit));
    }

    #[test]
    fn a_key_parses_back_in_any_case_and_spacing() {
        let k = key(2);
        assert_eq!(LicenseKey::parse(k.expose()).unwrap(), k);
        let sloppy = k.expose().to_lowercase().replace('-', " ");
        assert_eq!(LicenseKey::parse(&sloppy).unwrap(), k);
    }

    #[test]
    fn every_single_symbol_typo_is_caught() {
        let k = key(3);
        let text = k.expose().to_owned();
        for (i, c) in text.char_indices().skip(4).filter(|(_, c)| *c != '-') {
            for replacement in ALPHABET.iter().map(|b| char::from(*b)).filter(|r| *r != c) {
                let mut typo = text.clone();
                typo.replace_range(i..i + 1, &replacement.to_string());
                assert_eq!(
                    LicenseKey::parse(&typo),
                    Err(LicenseKeyError::BadCheckCharacter),
                    "{typo}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            "",
            "FLX",
            "ABC-12345",
            "FLX-12345-12345",
            &"FLX-".repeat(40),
            "FLX-UUUUU-UUUUU-UUUUU-UUUUU-UUUUU-UUUUU-0",
        ] {
            assert_eq!(
                LicenseKey::parse(bad),
                Err(LicenseKeyError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let k = key(4);
        assert!(!format!("{k:?}").contains(k.expose()));
    }
}
