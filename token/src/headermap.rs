//! The proxy-wasm serialized header map, for both sides of the ABI: the
//! filter decodes what Envoy hands it, the harness's host encodes what it
//! hands the filter and decodes what the filter sets.
//!
//! The SDK's own decoder allocates two buffers per header and panics on a
//! value that is not UTF-8 (Envoy accepts such bytes from clients). This one
//! borrows from the host's buffer, never panics, and rejects a malformed
//! buffer as a whole.
//!
//! ```text
//! u32 count | count × (u32 key_len, u32 value_len) | count × (key NUL value NUL)
//! ```
//! All integers are little-endian.

/// The header pairs in `buf`, borrowing from it, or `None` if `buf` is not a
/// well-formed serialized map. An empty buffer is an empty map.
pub fn decode(buf: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if buf.is_empty() {
        return Some(Vec::new());
    }
    let count = read_u32(buf, 0)? as usize;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > buf.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    let mut at = sizes_end;
    for n in 0..count {
        let key_len = read_u32(buf, 4 + n * 8)? as usize;
        let value_len = read_u32(buf, 8 + n * 8)? as usize;
        let key = take(buf, &mut at, key_len)?;
        let value = take(buf, &mut at, value_len)?;
        pairs.push((key, value));
    }
    Some(pairs)
}

/// Encodes pairs in the same layout (what a host hands the guest).
pub fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Takes `len` bytes at `*at` followed by a NUL terminator.
fn take<'a>(buf: &'a [u8], at: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = at.checked_add(len)?;
    let bytes = buf.get(*at..end)?;
    if *buf.get(end)? != 0 {
        return None;
    }
    *at = end + 1;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_pairs_including_non_utf8_values() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/mcp"),
            (b"authorization", b"Bearer x"),
            (b"x-odd", b"\xff\xfe"),
            (b"empty", b""),
        ];
        let buf = encode(&pairs);
        assert_eq!(decode(&buf).unwrap(), pairs);
    }

    #[test]
    fn empty_buffer_is_an_empty_map() {
        assert_eq!(decode(&[]).unwrap(), Vec::<(&[u8], &[u8])>::new());
        assert_eq!(decode(&encode(&[])).unwrap().len(), 0);
    }

    #[test]
    fn rejects_truncated_and_lying_buffers() {
        let buf = encode(&[(b"a", b"b"), (b"cc", b"dd")]);
        for cut in 1..buf.len() {
            assert_eq!(decode(&buf[..cut]), None, "cut at {cut}");
        }
        // A count far beyond the buffer must not allocate or read out of bounds.
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
        // A missing NUL terminator.
        let mut no_nul = buf.clone();
        let first_nul = 4 + 2 * 8 + 1;
        no_nul[first_nul] = b'x';
        assert_eq!(decode(&no_nul), None);
        // A length that runs past the end.
        let mut long = buf;
        long[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(decode(&long), None);
    }
}
