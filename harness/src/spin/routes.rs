//! Spin HTTP route matching: `/exact`, `/prefix/...` (trailing wildcard) and
//! `:name` segments. The most specific route wins: a route without a trailing
//! wildcard beats one with, then more literal segments beat fewer.

/// A compiled route of one `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A successful match of a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'r> {
    /// Index of the matching route in the router.
    pub index: usize,
    /// The route as written in the manifest (`spin-matched-route`).
    pub raw: &'r str,
    /// The route without its trailing `/...` (`spin-component-route`).
    pub component_route: String,
    /// The part of the path the trailing wildcard matched (`spin-path-info`).
    pub path_info: String,
    /// `:name` captures, in route order.
    pub params: Vec<(String, String)>,
}

impl Route {
    /// Compiles `raw`; it must start with `/`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if !raw.starts_with('/') {
            return Err(format!("route {raw:?} must start with '/'"));
        }
        let (base, wildcard) = match raw.strip_suffix("/...") {
            Some(base) => (base, true),
            None => (raw, false),
        };
        let mut segments = Vec::new();
        for seg in base.split('/').filter(|s| !s.is_empty()) {
            if seg == "..." {
                return Err(format!("route {raw:?}: '...' may only end a route"));
            }
            segments.push(match seg.strip_prefix(':') {
                Some("") => return Err(format!("route {raw:?}: ':' needs a parameter name")),
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(seg.to_owned()),
            });
        }
        Ok(Self {
            raw: raw.to_owned(),
            segments,
            wildcard,
        })
    }

    fn specificity(&self) -> (bool, usize, usize) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (!self.wildcard, literals, self.segments.len())
    }

    /// Matches a request path (no query string).
    fn matches(&self, path: &str) -> Option<Captured> {
        let mut rest = path;
        let mut params = Vec::new();
        for seg in &self.segments {
            let trimmed = rest.strip_prefix('/')?;
            let end = trimmed.find('/').unwrap_or(trimmed.len());
            let (part, tail) = trimmed.split_at(end);
            match seg {
                Segment::Literal(lit) if lit == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(_) if part.is_empty() => return None,
                Segment::Param(name) => params.push((name.clone(), part.to_owned())),
            }
            rest = tail;
        }
        if self.wildcard {
            // `/foo/...` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
            (rest.is_empty() || rest.starts_with('/')).then(|| Captured {
                path_info: rest.to_owned(),
                params,
            })
        } else {
            (rest.is_empty() || rest == "/").then(|| Captured {
                path_info: String::new(),
                params,
            })
        }
    }
}

/// What a matching route took from the path.
struct Captured {
    path_info: String,
    params: Vec<(String, String)>,
}

/// All routes of the manifest's HTTP triggers.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Compiles the routes, in trigger order.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let routes = routes
            .into_iter()
            .map(Route::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { routes })
    }

    /// The most specific route matching `path`; on a tie the first declared.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let mut best: Option<(usize, &Route, Captured)> = None;
        for (index, route) in self.routes.iter().enumerate() {
            let Some(captured) = route.matches(path) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(_, b, _)| route.specificity() > b.specificity())
            {
                best = Some((index, route, captured));
            }
        }
        best.map(|(index, route, captured)| RouteMatch {
            index,
            raw: &route.raw,
            component_route: route
                .raw
                .strip_suffix("/...")
                .unwrap_or(&route.raw)
                .to_owned(),
            path_info: captured.path_info,
            params: captured.params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_all_matches_everything_and_passes_the_whole_path() {
        let r = Router::new(["/..."]).unwrap();
        let m = r.route("/api/v1/mcptokens/introspect").unwrap();
        assert_eq!(m.raw, "/...");
        assert_eq!(m.path_info, "/api/v1/mcptokens/introspect");
        assert_eq!(m.component_route, "");
        assert_eq!(r.route("/").unwrap().path_info, "/");
    }

    #[test]
    fn exact_beats_wildcard_and_longer_prefix_beats_shorter() {
        let r = Router::new(["/...", "/api/...", "/api/health", "/api/:id"]).unwrap();
        assert_eq!(r.route("/api/health").unwrap().index, 2);
        assert_eq!(r.route("/api/x/y").unwrap().index, 1);
        assert_eq!(r.route("/other").unwrap().index, 0);
        let m = r.route("/api/tok_1").unwrap();
        assert_eq!(m.index, 3);
        assert_eq!(m.params, vec![("id".to_string(), "tok_1".to_string())]);
        assert_eq!(r.route("/api/x/y").unwrap().path_info, "/x/y");
    }

    #[test]
    fn prefix_is_segment_aligned_and_exact_needs_the_whole_path() {
        let r = Router::new(["/api/...", "/health"]).unwrap();
        assert!(r.route("/apix").is_none());
        assert_eq!(r.route("/api").unwrap().path_info, "");
        assert!(r.route("/health").is_some());
        assert!(r.route("/health/").is_some());
        assert!(r.route("/health/x").is_none());
        assert!(r.route("/").is_none());
    }

    #[test]
    fn bad_routes_are_refused() {
        for bad in ["api", "/a/.../b", "/a/:"] {
            assert!(Route::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
