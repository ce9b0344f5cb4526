//! Moving bytes across the guest boundary: bounds-checked reads and writes
//! of guest memory, copies into memory the guest allocates, and the ABI's
//! serialised header-map format.

use mcpgw_token::headermap;
use wasmtime::{Caller, Memory, TypedFunc};

use super::abi::Status;
use super::state::Worker;

/// The guest's linear memory and allocator, looked up once per instance.
#[derive(Clone)]
pub(crate) struct Guest {
    pub memory: Memory,
    pub allocate: TypedFunc<u32, u32>,
}

fn guest(caller: &Caller<'_, Worker>) -> Result<Guest, Status> {
    caller.data().guest.clone().ok_or(Status::InternalFailure)
}

/// Reads `len` bytes at `ptr`, or `InvalidMemoryAccess`.
pub(crate) fn read(caller: &Caller<'_, Worker>, ptr: u32, len: u32) -> Result<Vec<u8>, Status> {
    let g = guest(caller)?;
    let data = g.memory.data(caller);
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .ok_or(Status::InvalidMemoryAccess)?;
    data.get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

/// Reads a UTF-8 string (lossily: names and keys the SDK sends are `&str`).
pub(crate) fn read_str(caller: &Caller<'_, Worker>, ptr: u32, len: u32) -> Result<String, Status> {
    read(caller, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Writes `bytes` at `ptr`, or `InvalidMemoryAccess`.
pub(crate) fn write(caller: &mut Caller<'_, Worker>, ptr: u32, bytes: &[u8]) -> Result<(), Status> {
    let g = guest(caller)?;
    let data = g.memory.data_mut(caller);
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    data.get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(crate) fn write_u32(caller: &mut Caller<'_, Worker>, ptr: u32, v: u32) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

pub(crate) fn write_u64(caller: &mut Caller<'_, Worker>, ptr: u32, v: u64) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Hands `bytes` to the guest the way Envoy's `copyToPointerSize` does: an
/// empty value is a null pointer and size 0; anything else is copied into a
/// buffer from the guest's own allocator, which the guest then owns.
pub(crate) fn copy_out(
    caller: &mut Caller<'_, Worker>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<Result<(), Status>> {
    let mut ptr = 0;
    if !bytes.is_empty() {
        let Ok(len) = u32::try_from(bytes.len()) else {
            return Ok(Err(Status::InvalidMemoryAccess));
        };
        let g = match guest(caller) {
            Ok(g) => g,
            Err(s) => return Ok(Err(s)),
        };
        // A trap inside the guest allocator is a guest failure: propagate it.
        ptr = g.allocate.call(&mut *caller, len)?;
        if ptr == 0 {
            return Ok(Err(Status::InvalidMemoryAccess));
        }
        if let Err(s) = write(caller, ptr, bytes) {
            return Ok(Err(s));
        }
    }
    let len = bytes.len() as u32;
    Ok(write_u32(caller, ptr_ptr, ptr).and_then(|()| write_u32(caller, size_ptr, len)))
}

/// Serialises header pairs in the ABI's map format
/// (`mcpgw_token::headermap`); an empty map is no bytes at all, as Envoy
/// hands it over.
pub(crate) fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    if pairs.is_empty() {
        return Vec::new();
    }
    let raw: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    headermap::encode(&raw)
}

/// Parses the serialised pair format; like Envoy, anything truncated or
/// malformed reads as no pairs at all.
pub(crate) fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    headermap::decode(bytes)
        .map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| (lossy(k), lossy(v)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The SDK's own serialisation of this map (proxy-wasm 0.2.5 hostcalls tests).
    const SDK_BYTES: &[u8] = &[
        2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, b':', b'm', b'e', b't', b'h',
        b'o', b'd', 0, b'G', b'E', b'T', 0, b':', b'p', b'a', b't', b'h', 0, b'/', b'b', b'y',
        b't', b'e', b's', b'/', b'1', 0,
    ];

    fn pairs() -> Vec<(String, String)> {
        vec![
            (":method".into(), "GET".into()),
            (":path".into(), "/bytes/1".into()),
        ]
    }

    #[test]
    fn encodes_like_the_sdk() {
        assert_eq!(encode_pairs(&pairs()), SDK_BYTES);
        assert!(encode_pairs(&[]).is_empty());
    }

    #[test]
    fn decodes_what_the_sdk_sends() {
        assert_eq!(decode_pairs(SDK_BYTES), pairs());
        assert_eq!(decode_pairs(&[0, 0, 0, 0]), vec![]);
        assert_eq!(decode_pairs(&[]), vec![]);
    }

    #[test]
    fn truncated_or_lying_input_reads_as_empty() {
        assert_eq!(decode_pairs(&SDK_BYTES[..SDK_BYTES.len() - 3]), vec![]);
        assert_eq!(decode_pairs(&[255, 255, 255, 255, 1, 0, 0, 0]), vec![]);
        let mut huge_len = SDK_BYTES.to_vec();
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&huge_len), vec![]);
    }
}
