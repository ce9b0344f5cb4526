//! Lowercase hex: the one spelling of `token_sha`, of the admin key's hash
//! and of the token API's cursors. Decoding is strict (lowercase, even
//! length, exact size) and runs in constant time, so it is safe on hashes.

/// Lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// The bytes of lowercase hex `s`, or `None` for anything else (odd length,
/// uppercase, any other character).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    base16ct::lower::decode_vec(s).ok()
}

/// Exactly `N` bytes from `2 * N` lowercase hex characters (a `token_sha`
/// is `decode_array::<32>`).
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let exact = s.len() == 2 * N && base16ct::lower::decode(s, &mut out).is_ok();
    exact.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_lowercase() {
        assert_eq!(encode(&[0x00, 0xAB, 0xff]), "00abff");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn decoding_is_strict() {
        assert_eq!(decode("00abff"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0", "AB", "0g", "ab ", " ab", "+1", "é0"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decode_array_wants_the_exact_length() {
        assert_eq!(decode_array::<32>(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(decode_array::<32>(&"AB".repeat(32)), None);
        assert_eq!(decode_array::<32>(&"ab".repeat(31)), None);
        assert_eq!(decode_array::<32>(&"ab".repeat(33)), None);
        assert_eq!(decode_array::<32>(&format!("{}zz", "ab".repeat(31))), None);
        assert_eq!(decode_array::<32>(""), None);
        assert_eq!(decode_array::<0>(""), Some([]));
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = encode(&bytes);
            prop_assert_eq!(text.len(), 2 * bytes.len());
            prop_assert!(text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            prop_assert_eq!(decode(&text), Some(bytes));
        }

        #[test]
        fn agrees_with_std_formatting(bytes in proptest::array::uniform32(any::<u8>())) {
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(encode(&bytes), expected.clone());
            prop_assert_eq!(decode_array::<32>(&expected), Some(bytes));
        }
    }
}
