//! License key format: `FLX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-C`.
//!
//! Thirty Crockford base32 symbols carry 150 bits of entropy (the caller supplies the random
//! bytes, from the OS CSPRNG), grouped by five for humans, then one check symbol (Luhn mod 32)
//! so that a typo is rejected before any lookup. Crockford's alphabet has no I, L, O or U; on
//! input those are read as 1, 1, 0 and rejected.
//!
//! What the check symbol catches (both proved exhaustively by the tests below):
//! - every single mistyped symbol, in any key;
//! - every swap of two different neighbours, in every key issued since this rule, because
//!   Luhn mod 32 has exactly one blind pair, `0` and `Z` (doubling maps 0 to 0 and 31 to 31,
//!   so their swap keeps the sum), and new keys never have those two side by side
//!   ([`LicenseKey::catches_every_adjacent_swap`]; the caller draws again, ~6% of draws).
//!   Keys issued before keep validating unchanged; in those, and only there, swapping an
//!   adjacent `0` and `Z` goes unnoticed (it then matches no key and is refused as unknown).
//!
//! The check algorithm itself stays Luhn mod 32 so that every key already issued still
//! validates: a new algorithm (a Damm table, or ISO 7064 over a larger alphabet) would have
//! given issued keys a different check symbol.

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

    /// Whether the check symbol catches every swap of two adjacent symbols of this key:
    /// no `0` stands next to a `Z` (check symbol included). New keys must have this.
    pub fn catches_every_adjacent_swap(&self) -> bool {
        let symbols: Vec<u8> = self.0[PREFIX.len()..]
            .bytes()
            .filter(|b| *b != b'-')
            .filter_map(symbol_value)
            .collect();
        symbols
            .windows(2)
            .all(|pair| !is_blind_pair(pair[0], pair[1]))
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

/// The one pair of different symbols whose adjacent swap Luhn mod 32 cannot see: `0` and
/// `Z` (values 0 and 31, which doubling leaves where they are, mod 31).
fn is_blind_pair(a: u8, b: u8) -> bool {
    matches!((a, b), (0, 31) | (31, 0))
}

/// Luhn mod N over base-32 symbols: catches every single-symbol error, and every swap of two
/// different adjacent symbols but `0`/`Z` (see [`is_blind_pair`]).
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

    /// A key whose body is `body` (values), as text with its check symbol.
    fn text_of(body: &[u8]) -> String {
        LicenseKey::from_symbols(body).expose().to_owned()
    }

    /// The 31 symbol values of a key's text (body, then check symbol).
    fn symbols_of(text: &str) -> Vec<u8> {
        text[PREFIX.len()..]
            .bytes()
            .filter(|b| *b != b'-')
            .map(|b| symbol_value(b).unwrap())
            .collect()
    }

    /// The key text with its 31 symbols replaced by `symbols` (grouping kept).
    fn with_symbols(symbols: &[u8]) -> String {
        let mut text = String::from(PREFIX);
        for group in symbols[..BODY_LEN].chunks(GROUP_LEN) {
            text.push('-');
            text.extend(group.iter().map(|v| char::from(ALPHABET[usize::from(*v)])));
        }
        text.push('-');
        text.push(char::from(ALPHABET[usize::from(symbols[BODY_LEN])]));
        text
    }

    /// Exhaustive over what decides the outcome: the check sum is a sum of one addend per
    /// position that depends only on the symbol and the position's parity, so a change at
    /// positions i (and i+1) is caught in every key iff it is caught in one key per parity.
    /// Every position of a key is tried (both parities many times), every symbol value and
    /// every replacement.
    #[test]
    fn every_single_substitution_is_caught_exhaustively() {
        for position in 0..=BODY_LEN {
            for value in 0..32u8 {
                let mut body = vec![0u8; BODY_LEN];
                if position < BODY_LEN {
                    body[position] = value;
                }
                let mut symbols = symbols_of(&text_of(&body));
                if position == BODY_LEN && symbols[BODY_LEN] != value {
                    continue; // the check symbol's own value is not free: done below
                }
                let original = symbols[position];
                for replacement in (0..32u8).filter(|r| *r != original) {
                    symbols[position] = replacement;
                    assert_eq!(
                        LicenseKey::parse(&with_symbols(&symbols)),
                        Err(LicenseKeyError::BadCheckCharacter),
                        "position {position}: {original} -> {replacement}"
                    );
                    symbols[position] = original;
                }
            }
        }
        // The check symbol itself: each of its 32 values occurs (the last body symbol runs
        // through all 32 values), and any other check symbol is refused.
        for last in 0..32u8 {
            let mut body = vec![0u8; BODY_LEN];
            body[BODY_LEN - 1] = last;
            let symbols = symbols_of(&text_of(&body));
            for replacement in (0..32u8).filter(|r| *r != symbols[BODY_LEN]) {
                let mut typo = symbols.clone();
                typo[BODY_LEN] = replacement;
                assert!(LicenseKey::parse(&with_symbols(&typo)).is_err());
            }
        }
    }

    /// Every adjacent pair of positions (the last pair is the last body symbol and the check
    /// symbol), every ordered pair of different values: the swap is caught unless the pair
    /// is `0`/`Z`, and a key that has such a pair never comes out of the generator's filter.
    #[test]
    fn every_adjacent_swap_is_caught_but_the_blind_pair_exhaustively() {
        let mut blind = 0;
        for position in 0..BODY_LEN {
            for a in 0..32u8 {
                for b in (0..32u8).filter(|b| *b != a) {
                    let mut body = vec![0u8; BODY_LEN];
                    let symbols = if position + 1 < BODY_LEN {
                        body[position] = a;
                        body[position + 1] = b;
                        symbols_of(&text_of(&body))
                    } else {
                        // b must be the check symbol: find a first body symbol that makes it.
                        body[BODY_LEN - 1] = a;
                        let found = (0..32u8).find_map(|first| {
                            body[0] = first;
                            let symbols = symbols_of(&text_of(&body));
                            (symbols[BODY_LEN] == b).then_some(symbols)
                        });
                        found.unwrap()
                    };
                    let key = LicenseKey::parse(&with_symbols(&symbols)).unwrap();
                    let mut swapped = symbols.clone();
                    swapped.swap(position, position + 1);
                    let caught = LicenseKey::parse(&with_symbols(&swapped)).is_err();
                    if is_blind_pair(a, b) {
                        blind += 1;
                        assert!(!caught, "Luhn mod 32 was expected to miss {a}/{b}");
                        assert!(!key.catches_every_adjacent_swap());
                    } else {
                        assert!(caught, "position {position}: {a}/{b}");
                    }
                }
            }
        }
        // 0/Z and Z/0 at each of the 30 adjacent positions: the only misses.
        assert_eq!(blind, 2 * BODY_LEN);
    }

    #[test]
    fn a_key_with_a_blind_pair_still_parses_as_issued() {
        let mut body = vec![1u8; BODY_LEN];
        body[3] = 0;
        body[4] = 31;
        let key = LicenseKey::parse(&text_of(&body)).unwrap();
        assert!(!key.catches_every_adjacent_swap());
        assert!(LicenseKey::parse(&text_of(&[1u8; BODY_LEN]))
            .unwrap()
            .catches_every_adjacent_swap());
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
