//! Which store the component keeps its tokens in, from the Spin variables
//! `store` (`sqlite`, the default, or `postgres`), `postgres_url` (secret)
//! and `postgres_host` (the `host:port` that `allowed_outbound_hosts` lets
//! the component reach). Read apart from the rest of the configuration, so
//! that `/health` can say the storage is misconfigured.

/// Spin variables read here (component-level names).
pub const VARIABLES: [&str; 3] = ["store", "postgres_url", "postgres_host"];

/// Where the tokens are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// Spin's `default` SQLite database.
    Sqlite,
    /// PostgreSQL through `spin:postgres`, at this address.
    Postgres { url: String },
}

impl StoreChoice {
    /// `sqlite` or `postgres`, as `/health` names it.
    pub fn name(&self) -> &'static str {
        match self {
            StoreChoice::Sqlite => "sqlite",
            StoreChoice::Postgres { .. } => "postgres",
        }
    }

    /// Reads the choice; errors name the variable and say what to set. The
    /// URL itself is never echoed (it carries a password).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        match get("store").as_deref() {
            None | Some("sqlite") => Ok(StoreChoice::Sqlite),
            Some("postgres") => {
                let url = get("postgres_url").ok_or(
                    "variable store = \"postgres\" needs postgres_url, e.g. \
                     postgres://user:password@db.internal:5432/mcpgw (a secret: set it with \
                     SPIN_VARIABLE_POSTGRES_URL or a secret store, not in spin.toml)",
                )?;
                let (host, port) = address_of(&url)?;
                if let Some(allowed) = get("postgres_host") {
                    let allowed = allowed.to_ascii_lowercase();
                    let (ah, ap) = match allowed.rsplit_once(':') {
                        Some((h, p)) => (h.to_owned(), p.parse::<u16>().ok()),
                        None => (allowed.clone(), Some(5432)),
                    };
                    if ah != host || ap != Some(port) {
                        return Err(format!(
                            "postgres_url points at {host}:{port} but variable postgres_host is \
                             {allowed:?}, and allowed_outbound_hosts lets the component reach \
                             only postgres://{{{{ postgres_host }}}}: set postgres_host = \
                             \"{host}:{port}\""
                        ));
                    }
                }
                Ok(StoreChoice::Postgres { url })
            }
            Some(other) => Err(format!(
                "variable store = {other:?} is not a store: use \"sqlite\" or \"postgres\""
            )),
        }
    }
}

/// The first host and port of a PostgreSQL address, in URL form
/// (`postgres://user:pass@host:port/db?...`) or `key=value` form
/// (`host=... port=...`); the port defaults to 5432.
pub fn address_of(url: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| {
        format!(
            "variable postgres_url is not a PostgreSQL address ({why}); write \
             postgres://user:password@host:5432/database"
        )
    };
    let (host, port) = if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // The first of several hosts is checked; the host checks them all.
        let first = hostport.split(',').next().unwrap_or_default();
        match first.strip_prefix('[') {
            Some(v6) => {
                let (h, rest) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
                (h.to_owned(), rest.strip_prefix(':').map(str::to_owned))
            }
            None => match first.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
                None => (first.to_owned(), None),
            },
        }
    } else if url.contains('=') {
        let field = |k: &str| {
            url.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .map(|v| v.split(',').next().unwrap_or_default().to_owned())
        };
        (field("host").unwrap_or_default(), field("port"))
    } else {
        return Err(bad("neither postgres://… nor key=value"));
    };
    if host.is_empty() || host.starts_with('/') {
        return Err(bad("it names no TCP host"));
    }
    let port = match port {
        None => 5432,
        Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(vars: &[(&str, &str)]) -> Result<StoreChoice, String> {
        StoreChoice::from_vars(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn sqlite_is_the_default() {
        assert_eq!(choice(&[]), Ok(StoreChoice::Sqlite));
        assert_eq!(choice(&[("store", " sqlite ")]), Ok(StoreChoice::Sqlite));
        assert_eq!(choice(&[("store", "")]), Ok(StoreChoice::Sqlite));
    }

    #[test]
    fn postgres_needs_a_url_its_host_may_reach() {
        let url = "postgres://u:secret@DB.internal:6543/mcpgw";
        assert_eq!(
            choice(&[("store", "postgres"), ("postgres_url", url)]),
            Ok(StoreChoice::Postgres { url: url.into() })
        );
        assert!(choice(&[
            ("store", "postgres"),
            ("postgres_url", url),
            ("postgres_host", "db.internal:6543")
        ])
        .is_ok());
        let e = choice(&[
            ("store", "postgres"),
            ("postgres_url", url),
            ("postgres_host", "localhost:5432"),
        ])
        .unwrap_err();
        assert!(e.contains("postgres_host = \"db.internal:6543\""), "{e}");
        assert!(!e.contains("secret"), "the password leaked: {e}");
        let e = choice(&[("store", "postgres")]).unwrap_err();
        assert!(e.contains("postgres_url"), "{e}");
        let e = choice(&[("store", "mysql")]).unwrap_err();
        assert!(e.contains("\"sqlite\" or \"postgres\""), "{e}");
    }

    #[test]
    fn addresses_in_both_forms() {
        for (url, want) in [
            ("postgres://h/db", ("h", 5432)),
            ("postgresql://u@h:1/db?sslmode=disable", ("h", 1)),
            ("postgres://u:p@a:2,b:3/db", ("a", 2)),
            ("postgres://u:p@[::1]:4/db", ("::1", 4)),
            ("host=h port=5 user=u", ("h", 5)),
            ("user=u host=h", ("h", 5432)),
        ] {
            assert_eq!(address_of(url), Ok((want.0.to_owned(), want.1)), "{url}");
        }
        for bad in [
            "db:5432",
            "postgres://",
            "host=/run/pg",
            "postgres://h:x/db",
        ] {
            assert!(address_of(bad).is_err(), "{bad}");
        }
    }
}
