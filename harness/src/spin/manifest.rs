//! The subset of a Spin application manifest (`spin.toml`, manifest version 2)
//! that the host acts on: HTTP triggers, component sources, SQLite databases,
//! allowed outbound hosts, environment and variables.
//!
//! Fields the host cannot honour (key-value stores, mounted files, inline
//! components) are refused at load time rather than silently ignored, so a
//! manifest that works here means the same thing under `spin up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::allowed_hosts::AllowedHost;

/// A loaded manifest, with paths resolved against the manifest's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Absolute or cwd-relative path of the `spin.toml` read.
    pub path: PathBuf,
    /// `[application] name`.
    pub name: String,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]` entries in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[component.<id>]` tables, by id.
    pub components: BTreeMap<String, ComponentDecl>,
}

/// One `[variables]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
}

/// One `[[trigger.http]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// Route pattern, e.g. `/...` or `/api/:id`.
    pub route: String,
    /// Id of the component that serves it.
    pub component: String,
}

/// One `[component.<id>]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDecl {
    /// The `.wasm` file, resolved against the manifest directory.
    pub source: PathBuf,
    /// `sqlite_databases` labels the component may open.
    pub sqlite_databases: Vec<String>,
    /// `allowed_outbound_hosts` as written (`{{ name }}` templates are filled
    /// in at start, from the application variables).
    pub allowed_outbound_hosts: Vec<String>,
    /// `[component.<id>.variables]`: component key -> template.
    pub variables: BTreeMap<String, String>,
    /// `environment`: passed to the guest as WASI environment variables.
    pub environment: BTreeMap<String, String>,
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read Spin manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid Spin manifest {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Manifest {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, dir).map_err(|message| ManifestError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses manifest text; `dir` is where relative `source` paths start.
    pub fn parse(text: &str, path: &Path, dir: &Path) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string())?;
        if raw.spin_manifest_version != 2 {
            return Err(format!(
                "spin_manifest_version = {} is not supported; this host reads version 2",
                raw.spin_manifest_version
            ));
        }

        let mut variables = BTreeMap::new();
        for (name, decl) in raw.variables {
            if decl.required && decl.default.is_some() {
                return Err(format!(
                    "variable {name:?} is both required and has a default: keep one of them"
                ));
            }
            if !decl.required && decl.default.is_none() {
                return Err(format!(
                    "variable {name:?} needs either `default = \"...\"` or `required = true`"
                ));
            }
            variables.insert(
                name,
                VariableDecl {
                    default: decl.default,
                    required: decl.required,
                    secret: decl.secret,
                },
            );
        }

        let mut components = BTreeMap::new();
        for (id, c) in raw.component {
            if !c.key_value_stores.is_empty() {
                return Err(format!(
                    "component {id:?} asks for key_value_stores {:?}; this host provides SQLite only",
                    c.key_value_stores
                ));
            }
            if !c.files.is_empty() {
                return Err(format!(
                    "component {id:?} mounts `files`; this host does not mount files"
                ));
            }
            let source = match c.source {
                RawSource::Path(p) => dir.join(p),
                RawSource::Other(_) => {
                    return Err(format!(
                        "component {id:?}: `source` must be a local file path; remote sources are not fetched"
                    ))
                }
            };
            for entry in &c.allowed_outbound_hosts {
                // Templates can only be checked once the variables have values.
                if !entry.contains("{{") {
                    check_outbound(entry).map_err(|e| format!("component {id:?}: {e}"))?;
                }
            }
            components.insert(
                id,
                ComponentDecl {
                    source,
                    sqlite_databases: c.sqlite_databases,
                    allowed_outbound_hosts: c.allowed_outbound_hosts,
                    variables: c.variables,
                    environment: c.environment,
                },
            );
        }

        let mut http_triggers = Vec::new();
        for (i, t) in raw.trigger.http.into_iter().enumerate() {
            let route = match t.route {
                RawRoute::Path(r) => r,
                RawRoute::Other(_) => {
                    return Err(format!(
                    "trigger.http[{i}]: only string routes are supported (private routes are not)"
                ))
                }
            };
            let component = match t.component {
                Some(RawComponentRef::Id(id)) => id,
                Some(RawComponentRef::Inline(_)) => {
                    return Err(format!(
                        "trigger.http[{i}] (route {route:?}): declare the component as [component.<id>] and refer to it by id"
                    ))
                }
                None => {
                    return Err(format!(
                        "trigger.http[{i}] (route {route:?}) has no `component`"
                    ))
                }
            };
            if !components.contains_key(&component) {
                return Err(format!(
                    "trigger.http[{i}] (route {route:?}) names component {component:?}, which has no [component.{component}] table"
                ));
            }
            http_triggers.push(HttpTrigger { route, component });
        }
        if http_triggers.is_empty() {
            return Err("no [[trigger.http]] entry: nothing to serve".into());
        }

        Ok(Self {
            path: path.to_owned(),
            name: raw.application.name,
            variables,
            http_triggers,
            components,
        })
    }
}

/// Parses one `allowed_outbound_hosts` entry and refuses what this host
/// cannot honour: it provides outbound PostgreSQL only (no HTTP, Redis,
/// MySQL or MQTT), so an entry for another scheme would be silently useless.
pub fn check_outbound(entry: &str) -> Result<AllowedHost, String> {
    let host = AllowedHost::parse(entry).map_err(|e| format!("allowed_outbound_hosts: {e}"))?;
    match host.scheme() {
        None | Some("postgres") => Ok(host),
        Some(other) => Err(format!(
            "allowed_outbound_hosts entry {entry:?}: this host provides outbound postgres:// only, not {other}://"
        )),
    }
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: i64,
    #[serde(default)]
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize, Default)]
struct RawApplication {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    // Accepted because Spin accepts it; not used.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: RawRoute,
    component: Option<RawComponentRef>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Other(#[allow(dead_code)] toml::Value),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawComponentRef {
    Id(String),
    Inline(#[allow(dead_code)] toml::Value),
}

#[derive(Deserialize)]
struct RawComponent {
    source: RawSource,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    files: Vec<toml::Value>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSource {
    Path(PathBuf),
    Other(#[allow(dead_code)] toml::Value),
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "token-api"

[variables]
admin_key_sha256 = { required = true, secret = true }
cache_ttl_s = { default = "30" }

[[trigger.http]]
route = "/..."
component = "token-api"

[component.token-api]
source = "../target/wasm32-wasip2/release/token_api.wasm"
sqlite_databases = ["default"]
allowed_outbound_hosts = ["postgres://{{ db_host }}", "postgres://10.0.0.0/8:*"]
environment = { RUST_LOG = "info" }

[component.token-api.variables]
admin_key_sha256 = "{{ admin_key_sha256 }}"
cache_ttl_s = "{{ cache_ttl_s }}"

[component.token-api.build]
command = "cargo build --target wasm32-wasip2 --release"
"#;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("/app/spin.toml"), Path::new("/app"))
    }

    #[test]
    fn reads_the_fields_the_host_uses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.name, "token-api");
        assert_eq!(
            m.http_triggers,
            vec![HttpTrigger {
                route: "/...".into(),
                component: "token-api".into()
            }]
        );
        let c = &m.components["token-api"];
        assert_eq!(
            c.source,
            Path::new("/app/../target/wasm32-wasip2/release/token_api.wasm")
        );
        assert_eq!(c.sqlite_databases, vec!["default".to_string()]);
        assert_eq!(
            c.allowed_outbound_hosts,
            vec![
                "postgres://{{ db_host }}".to_string(),
                "postgres://10.0.0.0/8:*".to_string()
            ]
        );
        assert_eq!(c.variables["cache_ttl_s"], "{{ cache_ttl_s }}");
        assert_eq!(c.environment["RUST_LOG"], "info");
        assert!(m.variables["admin_key_sha256"].required);
        assert!(m.variables["admin_key_sha256"].secret);
        assert_eq!(m.variables["cache_ttl_s"].default.as_deref(), Some("30"));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let cases = [
            (
                GOOD.replace("spin_manifest_version = 2", "spin_manifest_version = 1"),
                "version 2",
            ),
            (
                GOOD.replace(
                    "sqlite_databases = [\"default\"]",
                    "key_value_stores = [\"default\"]",
                ),
                "key_value_stores",
            ),
            (
                GOOD.replace("component = \"token-api\"", "component = \"nope\""),
                "[component.nope]",
            ),
            (
                GOOD.replace("{ default = \"30\" }", "{ }"),
                "`required = true`",
            ),
            (
                GOOD.replace(
                    "{ default = \"30\" }",
                    "{ default = \"30\", required = true }",
                ),
                "keep one",
            ),
            (
                GOOD.replace(
                    "source = \"../target/wasm32-wasip2/release/token_api.wasm\"",
                    "source = { url = \"https://x/y.wasm\", digest = \"sha256:00\" }",
                ),
                "local file path",
            ),
            (
                GOOD.replace("route = \"/...\"", "route = { private = true }"),
                "private routes",
            ),
            (
                GOOD.replace("postgres://10.0.0.0/8:*", "https://api.example.com"),
                "postgres:// only",
            ),
            (
                GOOD.replace("postgres://10.0.0.0/8:*", "db.internal:5432"),
                "no scheme",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn load_names_the_file_it_could_not_read() {
        let err = Manifest::load(Path::new("/definitely/not/here/spin.toml")).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here/spin.toml"));
    }
}
