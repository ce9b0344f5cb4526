//! Pagination cursors of the list and audit routes: opaque to callers (hex of
//! a tagged position, so one kind is never mistaken for the other). The
//! revocations feed's cursor is part of the wire format
//! (`mcpgw_token::wire::FeedCursor`).

use crate::error::ApiError;
use crate::ulid;
use mcpgw_token::hex::encode as hex;

/// Position after the last token of a page: `(created_at, id)`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: i64,
    pub id: String,
}

/// Position after the last audit event of a page, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub seq: i64,
}

impl ListCursor {
    pub fn encode(&self) -> String {
        hex(format!("t{}.{}", self.created_at, self.id).as_bytes())
    }

    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let text = unhex(s).ok_or_else(bad_cursor)?;
        let (at, id) = text
            .strip_prefix('t')
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(bad_cursor)?;
        let created_at = parse_i64(at).ok_or_else(bad_cursor)?;
        if !ulid::is_token_id(id) {
            return Err(bad_cursor());
        }
        Ok(ListCursor {
            created_at,
            id: id.to_owned(),
        })
    }
}

impl AuditCursor {
    pub fn encode(&self) -> String {
        hex(format!("a{}", self.seq).as_bytes())
    }

    pub fn decode(s: &str) -> Result<Self, ApiError> {
        let text = unhex(s).ok_or_else(bad_cursor)?;
        let seq = text
            .strip_prefix('a')
            .and_then(parse_i64)
            .ok_or_else(bad_cursor)?;
        Ok(AuditCursor { seq })
    }
}

fn bad_cursor() -> ApiError {
    ApiError::invalid(
        "cursor",
        "cursor is not one this route returned; pass \"next_cursor\" unchanged, or omit it to start from the newest",
    )
}

/// A non-negative decimal without sign or leading zeros.
fn parse_i64(s: &str) -> Option<i64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

fn unhex(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 256 {
        return None;
    }
    String::from_utf8(mcpgw_token::hex::decode(s)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "tok_01ARZ3NDEKTSV4RRFFQ69G5FAV";

    #[test]
    fn list_cursor_round_trips() {
        for created_at in [0, 1, 1_795_459_243, i64::MAX] {
            let c = ListCursor {
                created_at,
                id: ID.into(),
            };
            assert_eq!(ListCursor::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn audit_cursor_round_trips() {
        for seq in [0, 1, 999, i64::MAX] {
            let c = AuditCursor { seq };
            assert_eq!(AuditCursor::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn bad_cursors_are_invalid_cursor() {
        let list = ListCursor {
            created_at: 5,
            id: ID.into(),
        }
        .encode();
        let audit = AuditCursor { seq: 5 }.encode();
        let bad = [
            String::new(),
            "zz".into(),
            "abc".into(),
            list.to_uppercase(),
            list[..list.len() - 2].to_owned(),
            hex(b"t5"),
            hex(b"t-5.tok_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            hex(b"t05.tok_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            hex(b"t5.tok_nope"),
            hex(b"t99999999999999999999.tok_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            hex(&[0xff, 0xfe]),
            audit.clone(),
            "a".repeat(300),
        ];
        for b in &bad {
            let e = ListCursor::decode(b).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "invalid_cursor"),
                "{b:?}"
            );
        }
        for b in [list.as_str(), "", &hex(b"a"), &hex(b"a-1"), &hex(b"a1x")] {
            assert_eq!(
                AuditCursor::decode(b).unwrap_err().code,
                "invalid_cursor",
                "{b:?}"
            );
        }
    }
}
