//! What the fuzz targets share: how raw fuzzer bytes are framed into the
//! pieces a target needs, the invariants every error and reply must keep, and
//! small independent reference implementations the real code is compared to.
//!
//! Framing is plain text so that seeds are readable and libFuzzer's mutations
//! stay meaningful: a seed is what a person would write, not an encoding.

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

/// A fuzz input read like a small HTTP message: `name: value` lines, a blank
/// line, then the body. An input starting with `{` or `[` (a bare JSON body)
/// or without a blank line is all body.
#[derive(Debug, Default)]
pub struct Message<'a> {
    pub head: Vec<(&'a [u8], &'a [u8])>,
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    pub fn parse(data: &'a [u8]) -> Message<'a> {
        let all_body = Message {
            head: Vec::new(),
            body: data,
        };
        if matches!(data.first(), Some(b'{' | b'[')) {
            return all_body;
        }
        let Some(split) = data.windows(2).position(|w| w == b"\n\n") else {
            return all_body;
        };
        Message {
            head: lines(&data[..split]).map(header).collect(),
            body: &data[split + 2..],
        }
    }

    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// Every value of `name`, in order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.head
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }

    /// A header parsed as a number, if present and well-formed.
    pub fn num<T: core::str::FromStr>(&self, name: &str) -> Option<T> {
        core::str::from_utf8(self.get(name)?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A header as text, if present and UTF-8.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        core::str::from_utf8(self.get(name)?).ok()
    }
}

/// Lines separated by `\n` (a trailing `\r` is kept: it is input too).
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

/// `name: value` → (`name`, `value`); a line without a colon is a name with an
/// empty value. One space after the colon is optional, as in HTTP. A leading
/// colon belongs to the name, so pseudo-headers read as `:path: /mcp`.
pub fn header(line: &[u8]) -> (&[u8], &[u8]) {
    let from = usize::from(line.first() == Some(&b':'));
    match line[from..]
        .iter()
        .position(|&b| b == b':')
        .map(|i| i + from)
    {
        Some(i) => {
            let value = &line[i + 1..];
            (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[]),
    }
}

/// A value Envoy accepts in a response header: no control characters other
/// than tab (RFC 9110 §5.5), so nothing can split or end the header.
pub fn is_header_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
}

/// Drives a future that never waits on anything external (every body source
/// in the targets is in memory) to completion.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    // An in-memory future is ready at once; a bound keeps a bug from hanging
    // the fuzzer instead of reporting it.
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future over in-memory data never completed");
}

/// Reference glob: `*` matches any run of bytes, everything else itself.
/// Plain dynamic programming, quadratic and obviously right; the real matcher
/// is a single-backtrack loop.
pub fn reference_glob(pattern: &[u8], text: &[u8]) -> bool {
    // row[j]: pattern[..i] matches text[..j].
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        if p == b'*' {
            let mut any = false;
            for j in 0..=text.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=text.len() {
                next[j] = row[j - 1] && text[j - 1] == p;
            }
        }
        row = next;
    }
    row[text.len()]
}

/// The one name a name pattern without a glob matches: `\*` and `\\` read
/// as `*` and `\`; `None` when an unescaped `*` makes it a glob.
pub fn unescape_name(pattern: &str) -> Option<String> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => return None,
            '\\' => out.push(chars.next().unwrap_or('\\')),
            c => out.push(c),
        }
    }
    Some(out)
}

/// Decodes base62 digits (`0-9A-Za-z`, most significant first) into 32
/// big-endian bytes, or `None` if a digit is outside the alphabet or the value
/// needs more than 256 bits. Written independently of the token crate's
/// encoder so a round trip through both means something.
pub fn base62_decode_32(digits: &[u8]) -> Option<[u8; 32]> {
    let mut num = [0u8; 33];
    for &c in digits {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        // num = num * 62 + d, from the least significant byte up.
        let mut carry = u32::from(d);
        for b in num.iter_mut().rev() {
            let cur = u32::from(*b) * 62 + carry;
            *b = (cur & 0xff) as u8;
            carry = cur >> 8;
        }
        if carry != 0 || num[0] != 0 {
            return None;
        }
    }
    num[1..].try_into().ok()
}

/// Standard base64 with padding (RFC 4648 §4), for the `=?base64?…?=` header
/// form of SEP-2243; independent of the `base64` crate the filter decodes with.
pub fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The invariants of every token API error: a 4xx/5xx status, a snake_case
/// code, a message, a JSON body carrying both, and header values that cannot
/// split the response. `user_error` says the input alone caused it, so it
/// must be a 4xx: a 500 would mean the server blamed itself for bad input.
pub fn check_api_error(e: &token_api::error::ApiError, user_error: bool) {
    if user_error {
        assert!((400..500).contains(&e.status), "{e:?} should be a 4xx");
    } else {
        assert!((400..600).contains(&e.status), "{e:?}");
    }
    assert!(
        !e.code.is_empty()
            && e.code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "code {:?} is not snake_case",
        e.code
    );
    assert!(!e.message.is_empty(), "{e:?} has no message");
    let body: serde_json::Value = serde_json::from_slice(&e.body()).expect("error body is JSON");
    assert_eq!(body["error"]["code"], e.code.as_str());
    assert_eq!(body["error"]["message"], e.message.as_str());
    for (name, value) in &e.headers {
        assert!(is_header_value(value), "header {name}: {value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_splits_head_and_body() {
        let m = Message::parse(b"Mcp-Method: tools/call\nscope:mcp:*\nflag\n\n{\"a\":1}");
        assert_eq!(m.get("mcp-method"), Some(&b"tools/call"[..]));
        assert_eq!(m.get("scope"), Some(&b"mcp:*"[..]));
        assert_eq!(m.get("flag"), Some(&b""[..]));
        assert_eq!(m.get("missing"), None);
        assert_eq!(m.body, b"{\"a\":1}");
        // A bare JSON body, even one with a blank line inside.
        let m = Message::parse(b"{\n\n}");
        assert!(m.head.is_empty());
        assert_eq!(m.body, b"{\n\n}");
        let m = Message::parse(b"no blank line");
        assert!(m.head.is_empty());
        assert_eq!(m.body, b"no blank line");
        let m = Message::parse(b":path: /mcp?a=b:c\n:\n\n");
        assert_eq!(m.get(":path"), Some(&b"/mcp?a=b:c"[..]));
        assert_eq!(m.get(":"), Some(&b""[..]));
        let m = Message::parse(b"now: 17\n\n");
        assert_eq!(m.num::<i64>("now"), Some(17));
        assert_eq!(m.body, b"");
    }

    #[test]
    fn reference_glob_basics() {
        assert!(reference_glob(b"", b""));
        assert!(reference_glob(b"*", b""));
        assert!(reference_glob(b"*", b"anything"));
        assert!(reference_glob(b"list_*", b"list_"));
        assert!(reference_glob(b"a*b*c", b"aXbYbc"));
        assert!(!reference_glob(b"a*b*c", b"aXbYb"));
        assert!(!reference_glob(b"", b"a"));
        assert!(!reference_glob(b"abc", b"ab"));
        assert!(reference_glob(b"**a**", b"bab"));
    }

    #[test]
    fn unescape_name_reads_escapes_and_refuses_globs() {
        assert_eq!(unescape_name("whoami").as_deref(), Some("whoami"));
        assert_eq!(unescape_name(r"a\*b").as_deref(), Some("a*b"));
        assert_eq!(unescape_name(r"a\\b").as_deref(), Some(r"a\b"));
        assert_eq!(unescape_name(r"a\\\*").as_deref(), Some(r"a\*"));
        assert_eq!(unescape_name(r"a\\*"), None);
        assert_eq!(unescape_name("list_*"), None);
    }

    #[test]
    fn base62_decode_inverts_the_token_vectors() {
        // The fixed vectors of token/src/format/tests.rs.
        let zero = b"0000000000000000000000000000000000000000000";
        assert_eq!(base62_decode_32(zero), Some([0; 32]));
        assert_eq!(
            base62_decode_32(b"yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1"),
            Some([0xff; 32])
        );
        let mut counting = [0u8; 32];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(
            base62_decode_32(b"003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf"),
            Some(counting)
        );
        // One more than 2^256 - 1 does not fit; a bad digit is refused.
        assert_eq!(
            base62_decode_32(b"yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp2"),
            None
        );
        assert_eq!(base62_decode_32(b"00-"), None);
    }

    #[test]
    fn base64_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
        }
        assert_eq!(base64_encode(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn header_values() {
        assert!(is_header_value("Bearer realm=\"mcp\", scope=\"mcp:*\"\tü"));
        assert!(!is_header_value("a\r\nb"));
        assert!(!is_header_value("a\0"));
        assert!(!is_header_value("\u{7f}"));
    }

    #[test]
    fn block_on_runs_ready_futures() {
        assert_eq!(block_on(async { 7 }), 7);
    }
}
