//! A fast reading of one list item's top-level keys, for text serde_json has
//! already checked to be one valid JSON value (the item was captured as a
//! `RawValue`, which validates it). It only finds where strings and nested
//! values end, validating nothing again, and gives up (`None`) on anything it
//! would have to decode: a key or the wanted value holding an escape. The
//! caller then reads the item with serde as before, so both readings agree
//! by construction (a property test checks it).

/// What the scan found in an object.
#[derive(Debug, PartialEq, Eq)]
pub struct Keys<'a> {
    /// Every top-level key, in order, duplicates included.
    pub keys: Vec<&'a str>,
    /// The first member named `wanted`: `Some(Some(s))` a string without
    /// escapes, `Some(None)` any other value.
    pub wanted: Option<Option<&'a str>>,
}

/// The top-level keys of the object `text`, and the value of its first
/// `wanted` member; `None` when `text` is not an object or the scan would
/// have to decode an escape. `text` must be valid JSON.
pub fn object_keys<'a>(text: &'a str, wanted: &str) -> Option<Keys<'a>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    let mut out = Keys {
        keys: Vec::new(),
        wanted: None,
    };
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let (key, after) = plain_string(text, i)?;
        i = skip_ws(b, after);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        let end = value_end(b, i)?;
        if key == wanted && out.wanted.is_none() {
            out.wanted = Some(if b.get(i) == Some(&b'"') {
                Some(plain_string(text, i)?.0)
            } else {
                None
            });
        }
        out.keys.push(key);
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting at `i` (its opening quote) and the index after its
/// closing quote; `None` if it holds an escape.
fn plain_string(text: &str, i: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let rest = b.get(i + 1..)?;
    let len = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
    if rest.get(len) != Some(&b'"') {
        return None;
    }
    Some((text.get(i + 1..i + 1 + len)?, i + 2 + len))
}

/// The index just after the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            let rest = b.get(i..)?;
            let len = rest
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            Some(i + len)
        }
    }
}

/// The index after the closing quote of the string starting at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            // An escape: the next byte is taken whatever it is.
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}
