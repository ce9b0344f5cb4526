use super::*;
use proptest::prelude::*;

/// Tokens built with an independent Python encoder (zlib.crc32, big-int base62)
/// and hashed with `printf %s "$token" | sha256sum`.
const VECTORS: &[([u8; 32], &str, &str)] = &[
    (
        [0u8; 32],
        "mcpctl_pat_00000000000000000000000000000000000000000003YouIp",
        "cd06440b8382bd7c3d30f5b5a75688299751b24e69f0c6f1190a6d701c705245",
    ),
    (
        [0xffu8; 32],
        "mcpctl_pat_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp11wIQGt",
        "26bf4e472c18fb7ae41051ab13960598a28120dc34c2871428498b93157a082b",
    ),
    (
        counting(),
        "mcpctl_pat_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf4Nt3vD",
        "999c9d336977f2dcd127d4a8a5d316993e59f9229b7266070ff88da253435cae",
    ),
];

const fn counting() -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = i as u8;
        i += 1;
    }
    out
}

#[test]
fn fixed_vectors_encode_validate_and_hash() {
    for (secret, token, sha) in VECTORS {
        assert_eq!(&from_secret(secret), token);
        assert_eq!(validate(token), Ok(()));
        assert_eq!(&sha256_hex(token), sha);
    }
}

#[test]
fn generated_tokens_are_valid_and_distinct() {
    let a = generate().unwrap();
    let b = generate().unwrap();
    assert_eq!(a.len(), TOKEN_LEN);
    assert_eq!(TOKEN_LEN, 60);
    assert_eq!(validate(&a), Ok(()));
    assert_ne!(a, b);
}

#[test]
fn each_rejection_names_its_reason() {
    let good = VECTORS[2].1;
    assert_eq!(validate(""), Err(FormatError::Prefix));
    assert_eq!(validate("ghp_abc"), Err(FormatError::Prefix));
    assert_eq!(
        validate(&good.replacen("mcpctl_pat_", "MCPCTL_PAT_", 1)),
        Err(FormatError::Prefix)
    );
    assert_eq!(validate(&good[..59]), Err(FormatError::Length { got: 59 }));
    assert_eq!(
        validate(&format!("{good}0")),
        Err(FormatError::Length { got: 61 })
    );
    let mut bad = good.to_string();
    bad.replace_range(20..21, "-");
    assert_eq!(validate(&bad), Err(FormatError::Alphabet { at: 20 }));
    // Multi-byte UTF-8 of the right byte length is an alphabet error, not a panic.
    let mut utf = good[..58].to_string();
    utf.push('é');
    assert_eq!(validate(&utf), Err(FormatError::Alphabet { at: 58 }));
    let mut flipped = good.to_string();
    flipped.replace_range(59..60, "E");
    assert_eq!(validate(&flipped), Err(FormatError::Checksum));
}

#[test]
fn messages_tell_what_to_fix_without_echoing_the_token() {
    let msg = FormatError::Length { got: 12 }.to_string();
    assert!(msg.contains("60") && msg.contains("12"), "{msg}");
    assert!(FormatError::Prefix.to_string().contains("mcpctl_pat_"));
}

#[test]
fn hint_shows_prefix_and_four_chars_only() {
    let token = VECTORS[2].1;
    assert_eq!(hint(token), "mcpctl_pat_003a…");
    assert_eq!(hint("short"), "mcpctl_pat_…");
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"abcd"));
    assert!(ct_eq(b"", b""));
}

fn any_secret() -> impl Strategy<Value = [u8; 32]> {
    proptest::array::uniform32(any::<u8>())
}

proptest! {
    #[test]
    fn round_trip(secret in any_secret()) {
        let token = from_secret(&secret);
        prop_assert_eq!(token.len(), TOKEN_LEN);
        prop_assert!(token.starts_with(PREFIX));
        prop_assert_eq!(validate(&token), Ok(()));
    }

    /// Any single character replaced by another alphabet character is caught
    /// by the checksum (CRC32 detects every single-symbol error).
    #[test]
    fn every_single_char_corruption_is_caught(
        secret in any_secret(),
        pos in PREFIX.len()..TOKEN_LEN,
        replacement in 0usize..62,
    ) {
        let token = from_secret(&secret);
        let mut bytes = token.into_bytes();
        let new = ALPHABET[replacement];
        prop_assume!(bytes[pos] != new);
        bytes[pos] = new;
        let corrupted = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(validate(&corrupted), Err(FormatError::Checksum));
    }

    #[test]
    fn arbitrary_input_never_panics(s in ".{0,80}") {
        let _ = validate(&s);
        let _ = hint(&s);
    }
}

#[test]
fn the_checksum_is_the_zlib_crc32() {
    // The CRC-32 check value, and the empty input.
    assert_eq!(checksum_of(b"123456789"), 0xCBF4_3926);
    assert_eq!(checksum_of(b""), 0);
}
