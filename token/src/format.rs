//! The `mcpctl_pat_` token format (docs/DESIGN.md §3).
//!
//! ```text
//! mcpctl_pat_ <43 base62: 32 random bytes> <6 base62: CRC32 of all before>
//! ```
//!
//! Everything here is shared byte for byte by the filter (validation only),
//! the token API (minting, hashing) and the harness.

mod base62;

use core::fmt;
use sha2::{Digest, Sha256};

pub use base62::ALPHABET;

/// Every token starts with this.
pub const PREFIX: &str = "mcpctl_pat_";
/// Base62 characters carrying the 32 random bytes.
pub const SECRET_LEN: usize = 43;
/// Base62 characters carrying the CRC32.
pub const CHECKSUM_LEN: usize = 6;
/// Total length of a raw token.
pub const TOKEN_LEN: usize = PREFIX.len() + SECRET_LEN + CHECKSUM_LEN;
/// Secret characters a non-secret hint may show.
pub const HINT_CHARS: usize = 4;

/// Why a string is not a well-formed token. Messages never echo the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// Does not start with `mcpctl_pat_`.
    Prefix,
    /// Not exactly [`TOKEN_LEN`] bytes long.
    Length { got: usize },
    /// A byte outside `0-9A-Za-z` after the prefix, at this byte offset.
    Alphabet { at: usize },
    /// The trailing CRC32 does not match.
    Checksum,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix => write!(f, "token must start with {PREFIX:?}"),
            Self::Length { got } => {
                write!(f, "token must be {TOKEN_LEN} characters long, got {got}")
            }
            Self::Alphabet { at } => {
                write!(f, "token has a character outside 0-9A-Za-z at offset {at}")
            }
            Self::Checksum => write!(f, "token checksum does not match (mistyped or truncated?)"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Checks prefix, length, alphabet and checksum without any allocation.
pub fn validate(token: &str) -> Result<(), FormatError> {
    let bytes = token.as_bytes();
    // Length first: it is the cheapest and the most common way a header is wrong.
    if !bytes.starts_with(PREFIX.as_bytes()) {
        return Err(FormatError::Prefix);
    }
    if bytes.len() != TOKEN_LEN {
        return Err(FormatError::Length { got: bytes.len() });
    }
    if let Some(at) = bytes[PREFIX.len()..]
        .iter()
        .position(|&c| base62::digit(c).is_none())
    {
        return Err(FormatError::Alphabet {
            at: PREFIX.len() + at,
        });
    }
    let (body, checksum) = bytes.split_at(TOKEN_LEN - CHECKSUM_LEN);
    if base62::encode_u32(checksum_of(body)) != checksum {
        return Err(FormatError::Checksum);
    }
    Ok(())
}

/// CRC-32 (ISO-HDLC, the zlib one) with one 256-entry table: a token body
/// is 48 bytes, and a slicing-by-16 implementation's 16 KiB of tables would
/// be most of the filter's read-only data.
const CRC32: crc::Crc<u32, crc::Table<1>> =
    crc::Crc::<u32, crc::Table<1>>::new(&crc::CRC_32_ISO_HDLC);

fn checksum_of(body: &[u8]) -> u32 {
    CRC32.checksum(body)
}

/// Builds the token for 32 secret bytes. Deterministic; [`generate`] supplies
/// the bytes from the OS CSPRNG.
pub fn from_secret(secret: &[u8; 32]) -> String {
    let mut out = [0u8; TOKEN_LEN];
    out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
    let fits = base62::encode_into(secret, &mut out[PREFIX.len()..PREFIX.len() + SECRET_LEN]);
    debug_assert!(fits, "62^43 > 2^256");
    let (body, checksum) = out.split_at_mut(TOKEN_LEN - CHECKSUM_LEN);
    checksum.copy_from_slice(&base62::encode_u32(checksum_of(body)));
    // Every byte written above is ASCII from the prefix or the alphabet.
    out.iter().map(|&b| b as char).collect()
}

/// Mints a fresh token from the operating system's CSPRNG.
#[cfg(feature = "generate")]
pub fn generate() -> Result<String, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    Ok(from_secret(&secret))
}

/// Lowercase hex SHA-256 of the full raw token: the only form kept at rest.
pub fn sha256_hex(token: &str) -> String {
    crate::hex::encode(&sha256(token))
}

/// SHA-256 of the full raw token, as bytes (`sha256_hex` is its hex).
pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Non-secret display hint: the prefix plus the first [`HINT_CHARS`] secret
/// characters, e.g. `mcpctl_pat_AbC1…`. Input that is not token-shaped shows
/// only the prefix, so a hint never reveals more than four secret characters.
pub fn hint(token: &str) -> String {
    let shown = token
        .get(..PREFIX.len() + HINT_CHARS)
        .filter(|s| s.starts_with(PREFIX))
        .unwrap_or(PREFIX);
    format!("{shown}…")
}

/// Constant-time equality for secrets compared outside a hash lookup.
/// Lengths are not secret (hex digests have a fixed length).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests;
