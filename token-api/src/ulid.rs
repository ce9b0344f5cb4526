//! Token ids: `tok_` + a 26-character ULID (48-bit millisecond time, 80 random
//! bits, Crockford base32), so ids sort by creation time and say nothing about
//! the secret.

/// Crockford's base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Id prefix of every token.
pub const ID_PREFIX: &str = "tok_";
/// Characters in a ULID.
pub const LEN: usize = 26;

/// Encodes a ULID from its time (milliseconds since the epoch, 48 bits kept)
/// and 80 random bits.
pub fn encode(ms: u64, random: [u8; 10]) -> String {
    let mut v: u128 = u128::from(ms & 0xffff_ffff_ffff) << 80;
    for (i, b) in random.iter().enumerate() {
        v |= u128::from(*b) << (72 - 8 * i);
    }
    // 26 characters carry 130 bits; the top two are always zero.
    (0..LEN)
        .map(|i| ALPHABET[((v >> (5 * (LEN - 1 - i))) & 31) as usize] as char)
        .collect()
}

/// True for a well-formed ULID (canonical upper case).
pub fn is_valid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == LEN && b[0] <= b'7' && b.iter().all(|c| ALPHABET.contains(c))
}

/// A fresh token id for this instant.
pub fn new_token_id(now_ms: i64) -> Result<String, getrandom::Error> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random)?;
    Ok(format!(
        "{ID_PREFIX}{}",
        encode(u64::try_from(now_ms).unwrap_or(0), random)
    ))
}

/// True for a string shaped like a token id.
pub fn is_token_id(s: &str) -> bool {
    s.strip_prefix(ID_PREFIX).is_some_and(is_valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_ulid_spec_vectors() {
        assert_eq!(encode(0, [0; 10]), "00000000000000000000000000");
        assert_eq!(
            encode(0xffff_ffff_ffff, [0xff; 10]),
            "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
        );
        // The timestamp part of the spec's example 01ARZ3NDEKTSV4RRFFQ69G5FAV.
        assert_eq!(&encode(1_469_918_176_385, [0; 10])[..10], "01ARYZ6S41");
        assert_eq!(
            &encode(0, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1])[16..],
            "0000000001"
        );
    }

    #[test]
    fn ids_sort_by_time() {
        let a = encode(1_000, [0xff; 10]);
        let b = encode(1_001, [0; 10]);
        assert!(a < b);
    }

    #[test]
    fn fresh_ids_are_valid_and_distinct() {
        let a = new_token_id(1_795_459_243_000).unwrap();
        let b = new_token_id(1_795_459_243_000).unwrap();
        assert!(is_token_id(&a) && is_token_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a.len(), 30);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "tok_",
            "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "tok_01ARZ3NDEKTSV4RRFFQ69G5FA",
            "tok_01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "tok_01arz3ndektsv4rrffq69g5fav",
            "tok_01ARZ3NDEKTSV4RRFFQ69G5FAI",
            "tok_81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "key_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(!is_token_id(bad), "{bad:?}");
        }
        assert!(is_token_id("tok_01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    }
}
