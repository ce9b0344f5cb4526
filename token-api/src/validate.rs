//! Field rules of docs/DESIGN.md §4: token names, tenant and project labels.

use crate::error::ApiError;

/// Longest token name, in characters.
pub const NAME_MAX: usize = 64;
/// Longest tenant or project label, in bytes (all ASCII).
pub const LABEL_MAX: usize = 63;

/// A name is 1–64 printable characters without surrounding blanks.
pub fn name(name: &str) -> Result<(), ApiError> {
    let count = name.chars().count();
    if count == 0 {
        return Err(ApiError::invalid("name", "name must not be empty"));
    }
    if count > NAME_MAX {
        return Err(ApiError::invalid(
            "name",
            format!("name is {count} characters long; the limit is {NAME_MAX}"),
        ));
    }
    if let Some((i, c)) = name.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(ApiError::invalid(
            "name",
            format!(
                "name has a control character (U+{:04X}) at position {}; use printable characters",
                u32::from(c),
                i + 1
            ),
        ));
    }
    if name.trim() != name {
        return Err(ApiError::invalid(
            "name",
            "name must not start or end with whitespace",
        ));
    }
    Ok(())
}

/// A tenant or project label: `[a-z0-9][a-z0-9_-]{0,62}`; a leading `_` is
/// reserved for the gateway's own use.
pub fn label(field: &str, value: &str) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::invalid(field, format!("{field} {value:?} {why}")));
    if value.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.starts_with('_') {
        return bad("is reserved: names starting with \"_\" belong to the gateway".into());
    }
    if value.len() > LABEL_MAX {
        return bad(format!(
            "is {} bytes long; the limit is {LABEL_MAX}",
            value.len()
        ));
    }
    if let Some((i, c)) = value
        .char_indices()
        .find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        let hint = if c.is_ascii_uppercase() {
            " (use lower case)"
        } else {
            ""
        };
        return bad(format!(
            "has {c:?} at byte {i}; only a-z, 0-9, '_' and '-' are allowed{hint}"
        ));
    }
    if value.starts_with('-') {
        return bad("must start with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "a",
            "ci deploy bot",
            "Ünïcødé ✓",
            &"x".repeat(64),
            "é".repeat(64).as_str(),
        ] {
            assert_eq!(name(good), Ok(()), "{good:?}");
        }
        for (bad, says) in [
            ("", "empty"),
            (&"x".repeat(65), "65 characters"),
            ("tab\there", "U+0009"),
            ("new\nline", "position 4"),
            ("nul\0", "control"),
            ("del\u{7f}", "control"),
            (" padded", "whitespace"),
            ("padded ", "whitespace"),
        ] {
            let e = name(bad).unwrap_err();
            assert_eq!(e.code, "invalid_name");
            assert!(e.message.contains(says), "{bad:?}: {}", e.message);
        }
    }

    #[test]
    fn labels() {
        for good in ["a", "0", "acme", "acme-prod_2", &"a".repeat(63)] {
            assert_eq!(label("tenant", good), Ok(()), "{good:?}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("_system", "reserved"),
            ("_", "reserved"),
            ("-acme", "start with a letter or digit"),
            ("Acme", "lower case"),
            ("ac me", "' '"),
            ("acme.corp", "'.'"),
            ("ącme", "'ą'"),
            (&"a".repeat(64), "limit is 63"),
        ] {
            let e = label("project", bad).unwrap_err();
            assert_eq!(e.code, "invalid_project");
            assert!(e.message.contains(says), "{bad:?}: {}", e.message);
        }
    }
}
