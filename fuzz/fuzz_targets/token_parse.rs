//! The token format (docs/DESIGN.md §3): `validate` and `hint` on any string, and
//! `from_secret` round-tripped through an independent base62 decoder.
//!
//! Input: any bytes. As text it is validated and hinted; its first 32 bytes
//! are a secret to mint from, and byte 32 picks a character to corrupt.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgw_fuzz::base62_decode_32;
use mcpgw_token::format::{
    self, from_secret, hint, validate, FormatError, ALPHABET, PREFIX, SECRET_LEN, TOKEN_LEN,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_validate(&text);
    check_hint(&text);

    if let Some(secret) = data.get(..32) {
        let secret: [u8; 32] = secret.try_into().unwrap();
        let pick = data.get(32).copied().unwrap_or(0);
        check_round_trip(&secret, pick);
    }

    // Constant-time equality agrees with `==` on any two halves.
    let (a, b) = data.split_at(data.len() / 2);
    assert_eq!(format::ct_eq(a, b), a == b);
    assert!(format::ct_eq(a, a));
});

fn check_validate(s: &str) {
    match validate(s) {
        Ok(()) => {
            assert_eq!(s.len(), TOKEN_LEN);
            assert!(s.starts_with(PREFIX));
            // A token whose 43 digits fit in 256 bits is exactly what
            // `from_secret` mints for them.
            let digits = &s.as_bytes()[PREFIX.len()..PREFIX.len() + SECRET_LEN];
            if let Some(secret) = base62_decode_32(digits) {
                assert_eq!(from_secret(&secret), s);
            }
        }
        Err(FormatError::Prefix) => assert!(!s.starts_with(PREFIX)),
        Err(FormatError::Length { got }) => {
            assert!(s.starts_with(PREFIX));
            assert_eq!(got, s.len());
            assert_ne!(got, TOKEN_LEN);
        }
        Err(FormatError::Alphabet { at }) => {
            assert_eq!(s.len(), TOKEN_LEN);
            assert!(at >= PREFIX.len() && at < TOKEN_LEN);
            assert!(!ALPHABET.contains(&s.as_bytes()[at]));
        }
        Err(FormatError::Checksum) => assert_eq!(s.len(), TOKEN_LEN),
    }
    if let Err(e) = validate(s) {
        let message = e.to_string();
        assert!(!message.is_empty());
        // Messages never echo the token.
        if s.starts_with(PREFIX) && s.len() > PREFIX.len() + 1 {
            assert!(!message.contains(s), "{message}");
        }
    }
}

fn check_hint(s: &str) {
    let h = hint(s);
    let shown = h.strip_suffix('…').expect("a hint ends with an ellipsis");
    assert!(shown.starts_with(PREFIX));
    // Never more than the prefix and four secret characters.
    assert!(shown.len() <= PREFIX.len() + format::HINT_CHARS, "{h:?}");
    assert!(s.starts_with(shown) || shown == PREFIX);
}

fn check_round_trip(secret: &[u8; 32], pick: u8) {
    let token = from_secret(secret);
    assert_eq!(token.len(), TOKEN_LEN);
    assert_eq!(validate(&token), Ok(()), "{token}");
    let digits = &token.as_bytes()[PREFIX.len()..PREFIX.len() + SECRET_LEN];
    assert_eq!(base62_decode_32(digits).as_ref(), Some(secret), "{token}");
    assert_eq!(
        hint(&token),
        format!("{}…", &token[..PREFIX.len() + format::HINT_CHARS])
    );
    let sha = format::sha256_hex(&token);
    assert_eq!(sha.len(), 64);
    assert!(sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));

    // Any single changed character after the prefix is caught offline: CRC32
    // detects every one-byte error, and the checksum digits are canonical.
    let at = PREFIX.len() + usize::from(pick) % (TOKEN_LEN - PREFIX.len());
    let old = token.as_bytes()[at];
    let new = ALPHABET[(usize::from(pick) + 1 + ALPHABET.iter().position(|&c| c == old).unwrap())
        % ALPHABET.len()];
    let mut typo = token.clone().into_bytes();
    typo[at] = new;
    let typo = String::from_utf8(typo).unwrap();
    if typo != token {
        assert_eq!(validate(&typo), Err(FormatError::Checksum), "{typo}");
    }

    // Different secrets never mint the same token.
    let mut other = *secret;
    other[usize::from(pick) % 32] ^= 1 | pick;
    assert_ne!(from_secret(&other), token);
}
