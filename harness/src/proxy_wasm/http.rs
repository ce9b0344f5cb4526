//! HTTP values as Envoy hands them to a filter: header maps with Envoy's
//! semantics, bodies, the request a test sends and the responses it sees.

use std::fmt;

/// A header map with Envoy's semantics: names are lowercased on the way in,
/// order is kept, a name may repeat, and reading a repeated name yields all
/// of its values joined by a comma (what Envoy 1.40 returns to a filter).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a map from pairs, lowercasing names.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        let mut map = Self::new();
        for (k, v) in pairs {
            map.add(k.as_ref(), v.as_ref());
        }
        map
    }

    /// All values of `name` joined by `,`, or `None` when absent.
    pub fn get(&self, name: &str) -> Option<String> {
        let values = self.get_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(","))
        }
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        !self.get_all(name).is_empty()
    }

    /// Appends a value, keeping existing ones.
    pub fn add(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// Removes every value of `name`, then appends one (Envoy's `setCopy`).
    pub fn replace(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.add(name, value);
    }

    /// Removes every value of `name`; names are lowercase so this also
    /// removes every case variant a client sent.
    pub fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        self.0.retain(|(k, _)| *k != name);
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Names, in order, repeated names once.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for (k, _) in &self.0 {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
        names
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| format!("{k}: {v}")))
            .finish()
    }
}

/// A body; prints as text so failing assertions stay readable.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Body(pub Vec<u8>);

impl Body {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    /// When the body is not JSON, naming what it was.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.0)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "<{} bytes, not UTF-8>", self.0.len()),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body(v)
    }
}

/// A response: what the upstream sends, or what the client finally sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Body,
}

impl Response {
    /// A response carrying `body` as `application/json`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        let bytes = body.to_string().into_bytes();
        Self::new(status, &[("content-type", "application/json")], bytes)
    }

    /// A response with `:status`, the given headers and `content-length`.
    pub fn new(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Self {
        let mut map = Headers::new();
        map.add(":status", &status.to_string());
        for (k, v) in headers {
            map.add(k, v);
        }
        map.replace("content-length", &body.len().to_string());
        Response {
            status,
            headers: map,
            body: Body(body),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name)
    }
}

/// A request a client sends through the listener.
#[derive(Clone, Debug)]
pub struct Request {
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
    pub(crate) chunk_size: Option<usize>,
    pub(crate) upstream: Response,
    /// Where the upstream response body is cut into the chunks Envoy
    /// delivers (offsets, ascending); none: one chunk.
    pub(crate) upstream_cuts: Vec<usize>,
}

impl Request {
    /// `method path` with `:authority mcp.example.com`, `:scheme http`.
    pub fn new(method: &str, path: &str) -> Self {
        let mut headers = Headers::new();
        headers.add(":authority", "mcp.example.com");
        headers.add(":path", path);
        headers.add(":method", method);
        headers.add(":scheme", "http");
        Request {
            headers,
            body: Vec::new(),
            chunk_size: None,
            upstream: Response::json(200, &serde_json::json!({})),
            upstream_cuts: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Adds a header; the name is lowercased as Envoy's codec does, so
    /// `Authorization` and `authorization` end up as one name.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.add(name, value);
        self
    }

    /// Replaces a header, e.g. `:authority`.
    pub fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.replace(name, value);
        self
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, body: &serde_json::Value) -> Self {
        self.set_header("content-type", "application/json")
            .body(body.to_string().into_bytes())
    }

    /// A raw body; `content-length` is set to match.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.headers
            .replace("content-length", &body.len().to_string());
        self.body = body;
        self
    }

    /// Delivers the body to the filter in chunks of `size` bytes, as a
    /// client streaming a large body would, instead of in one piece.
    pub fn in_chunks(mut self, size: usize) -> Self {
        self.chunk_size = Some(size.max(1));
        self
    }

    /// What the upstream answers if the request reaches it (default: 200 `{}`).
    pub fn upstream_responds(mut self, response: Response) -> Self {
        self.upstream = response;
        self
    }

    /// Delivers the upstream response body in chunks of `size` bytes, as a
    /// server streaming it would.
    pub fn upstream_in_chunks(mut self, size: usize) -> Self {
        let size = size.max(1);
        self.upstream_cuts = (size..self.upstream.body.len()).step_by(size).collect();
        self
    }

    /// Delivers the upstream response body cut at these byte offsets (any
    /// offset: inside a UTF-8 character, a line ending, ...).
    pub fn upstream_cut_at(mut self, offsets: &[usize]) -> Self {
        let mut cuts: Vec<usize> = offsets
            .iter()
            .copied()
            .filter(|&o| o > 0 && o < self.upstream.body.len())
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        self.upstream_cuts = cuts;
        self
    }

    pub(crate) fn upstream_chunks(&self) -> Vec<Vec<u8>> {
        let body = self.upstream.body.as_bytes();
        if body.is_empty() {
            return Vec::new();
        }
        let mut chunks = Vec::new();
        let mut start = 0;
        for &cut in &self.upstream_cuts {
            chunks.push(body[start..cut].to_vec());
            start = cut;
        }
        chunks.push(body[start..].to_vec());
        chunks
    }

    pub(crate) fn body_chunks(&self) -> Vec<Vec<u8>> {
        match self.chunk_size {
            _ if self.body.is_empty() => Vec::new(),
            Some(n) => self.body.chunks(n).map(<[u8]>::to_vec).collect(),
            None => vec![self.body.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_repeats_read_comma_joined() {
        let mut h = Headers::new();
        h.add("Authorization", "Bearer a");
        h.add("AUTHORIZATION", "Bearer b");
        assert_eq!(h.get("authorization").as_deref(), Some("Bearer a,Bearer b"));
        assert_eq!(h.get_all("Authorization"), vec!["Bearer a", "Bearer b"]);
        assert_eq!(h.names(), vec!["authorization"]);
    }

    #[test]
    fn replace_drops_every_previous_value() {
        let mut h = Headers::from_pairs(&[("x-a", "1"), ("x-b", "2"), ("X-A", "3")]);
        h.replace("x-a", "4");
        assert_eq!(h.get_all("x-a"), vec!["4"]);
        assert_eq!(h.len(), 2);
        h.remove("X-B");
        assert!(!h.contains("x-b"));
        assert_eq!(h.get("x-missing"), None);
    }

    #[test]
    fn request_sets_pseudo_headers_and_content_length() {
        let r = Request::post("/mcp").json(&serde_json::json!({"a": 1}));
        assert_eq!(r.headers.get(":method").as_deref(), Some("POST"));
        assert_eq!(r.headers.get(":path").as_deref(), Some("/mcp"));
        assert_eq!(r.headers.get("content-length").as_deref(), Some("7"));
        assert_eq!(r.body_chunks(), vec![b"{\"a\":1}".to_vec()]);
        let chunks = r.in_chunks(3).body_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), b"{\"a\":1}".to_vec());
    }

    #[test]
    fn upstream_bodies_are_cut_where_asked() {
        let r =
            Request::post("/mcp").upstream_responds(Response::new(200, &[], b"abcdefg".to_vec()));
        assert_eq!(r.upstream_chunks(), vec![b"abcdefg".to_vec()]);
        let c = r.clone().upstream_in_chunks(3).upstream_chunks();
        assert_eq!(c, vec![b"abc".to_vec(), b"def".to_vec(), b"g".to_vec()]);
        let c = r.upstream_cut_at(&[5, 0, 2, 9]).upstream_chunks();
        assert_eq!(c, vec![b"ab".to_vec(), b"cde".to_vec(), b"fg".to_vec()]);
    }

    #[test]
    fn response_json_carries_status_and_length() {
        let r = Response::json(201, &serde_json::json!({"ok": true}));
        assert_eq!(r.header(":status").as_deref(), Some("201"));
        assert_eq!(r.header("content-length").as_deref(), Some("11"));
        assert_eq!(r.body.json()["ok"], true);
    }
}
