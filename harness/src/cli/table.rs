//! Plain aligned text tables for people; `--json` prints the API's JSON instead.

use serde_json::Value;

/// Renders rows under headers, each column as wide as its widest cell.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON field as display text: strings bare, null as "-", lists comma-joined.
pub fn cell(v: &Value, field: &str) -> String {
    match v.get(field) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "(none)".into(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligns_columns() {
        let t = render(
            &["ID", "NAME"],
            &[
                vec!["tok_1".into(), "a".into()],
                vec!["t".into(), "long name".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\ntok_1  a\nt      long name");
    }

    #[test]
    fn cells() {
        let v = json!({"s": "x", "n": null, "l": ["a", "b"], "e": [], "i": 3});
        assert_eq!(cell(&v, "s"), "x");
        assert_eq!(cell(&v, "n"), "-");
        assert_eq!(cell(&v, "missing"), "-");
        assert_eq!(cell(&v, "l"), "a,b");
        assert_eq!(cell(&v, "e"), "(none)");
        assert_eq!(cell(&v, "i"), "3");
    }
}
