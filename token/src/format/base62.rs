//! Fixed-width base62 over big-endian byte strings.
//!
//! The token format needs exactly 43 characters for 32 bytes and exactly 6 for a
//! CRC32, leading zeros included. General-purpose base62 crates either stop at
//! `u128` or drop leading zeros (variable width), so the fixed-width conversion
//! lives here; the tests check it against the `base62` crate as an oracle.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Value of one base62 digit, or `None` outside `0-9A-Za-z`.
pub const fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'Z' => Some(c - b'A' + 10),
        b'a'..=b'z' => Some(c - b'a' + 36),
        _ => None,
    }
}

/// Encodes `bytes` (big-endian, at most 32) into exactly `out.len()` base62
/// digits, most significant first. Returns `false` if the value does not fit.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) -> bool {
    let mut buf = [0u8; 32];
    let Some(num) = buf.get_mut(..bytes.len()) else {
        return false;
    };
    num.copy_from_slice(bytes);
    for slot in out.iter_mut().rev() {
        // Long division of `num` by 62; the remainder is the next digit.
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    num.iter().all(|&b| b == 0)
}

/// Encodes a `u32` into exactly six digits (62^6 > 2^32).
pub fn encode_u32(mut value: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pad(s: String, width: usize) -> String {
        format!("{}{}", "0".repeat(width - s.len()), s)
    }

    #[test]
    fn digits_round_trip() {
        for (i, &c) in ALPHABET.iter().enumerate() {
            assert_eq!(digit(c), Some(i as u8));
        }
        assert_eq!(digit(b'-'), None);
        assert_eq!(digit(b'_'), None);
        assert_eq!(digit(0xff), None);
    }

    #[test]
    fn u32_edges() {
        assert_eq!(&encode_u32(0), b"000000");
        assert_eq!(&encode_u32(61), b"00000z");
        assert_eq!(&encode_u32(62), b"000010");
        assert_eq!(&encode_u32(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn max_256_bit_value_fits_43_digits_but_not_42() {
        let max = [0xffu8; 32];
        let mut out43 = [0u8; 43];
        assert!(encode_into(&max, &mut out43));
        let mut out42 = [0u8; 42];
        assert!(!encode_into(&max, &mut out42));
    }

    proptest! {
        #[test]
        fn matches_base62_crate_for_u128(v: u128) {
            let mut out = [0u8; 22];
            prop_assert!(encode_into(&v.to_be_bytes(), &mut out));
            prop_assert_eq!(std::str::from_utf8(&out).unwrap(), pad(base62::encode(v), 22));
        }

        #[test]
        fn matches_base62_crate_for_u32(v: u32) {
            let ours = encode_u32(v);
            prop_assert_eq!(std::str::from_utf8(&ours).unwrap(), pad(base62::encode(v), 6));
        }
    }
}
