//! Envoy bootstraps for each variant: `envoy/bench/envoy.yaml` with the
//! `HTTP_FILTERS` line replaced by one file of `envoy/bench/filters/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// The HTTP filters in front of the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chain {
    /// Router only: the ceiling.
    None,
    /// `bench/empty-filter` with these probe ops (empty: the floor).
    Empty { probe_ops: String },
    /// The gateway's filter with this JSON configuration.
    McpAuth { config: serde_json::Value },
    /// Built-in `ext_authz` (HTTP) calling introspect.
    ExtAuthz,
}

impl Chain {
    pub fn snippet_file(&self) -> &'static str {
        match self {
            Chain::None => "none.yaml",
            Chain::Empty { .. } => "empty-wasm.yaml",
            Chain::McpAuth { .. } => "mcp-auth.yaml",
            Chain::ExtAuthz => "ext-authz.yaml",
        }
    }
}

/// Everything a bootstrap needs besides the chain.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub admin_port: u16,
    pub listen_port: u16,
    pub upstream_port: u16,
    pub token_api_port: u16,
    pub filter_wasm: PathBuf,
    pub empty_wasm: PathBuf,
}

const PLACEHOLDER: &str = "${HTTP_FILTERS}";

/// Reads the template and the chain's snippet from `dir` (`envoy/bench`) and renders them.
pub fn render_from(dir: &Path, chain: &Chain, inputs: &Inputs) -> anyhow::Result<String> {
    let template = std::fs::read_to_string(dir.join("envoy.yaml"))
        .with_context(|| format!("reading {}", dir.join("envoy.yaml").display()))?;
    let snippet_path = dir.join("filters").join(chain.snippet_file());
    let snippet = std::fs::read_to_string(&snippet_path)
        .with_context(|| format!("reading {}", snippet_path.display()))?;
    render(&template, &snippet, chain, inputs)
}

/// Splices `snippet` at the placeholder line (each line indented like the
/// placeholder), then fills every other placeholder.
pub fn render(
    template: &str,
    snippet: &str,
    chain: &Chain,
    inputs: &Inputs,
) -> anyhow::Result<String> {
    let spliced = splice(template, snippet)?;
    let (probe_ops, filter_config) = match chain {
        Chain::Empty { probe_ops } => (probe_ops.clone(), String::new()),
        Chain::McpAuth { config } => (String::new(), config.to_string()),
        Chain::None | Chain::ExtAuthz => (String::new(), String::new()),
    };
    if probe_ops.contains(['"', '\\', '\n']) {
        bail!("probe ops {probe_ops:?} must not contain quotes, backslashes or newlines");
    }
    let vars = BTreeMap::from([
        ("ADMIN_PORT", inputs.admin_port.to_string()),
        ("LISTEN_PORT", inputs.listen_port.to_string()),
        ("UPSTREAM_PORT", inputs.upstream_port.to_string()),
        ("TOKEN_API_PORT", inputs.token_api_port.to_string()),
        ("FILTER_WASM", inputs.filter_wasm.display().to_string()),
        ("EMPTY_WASM", inputs.empty_wasm.display().to_string()),
        ("FILTER_CONFIG", filter_config),
        ("PROBE_OPS", probe_ops),
    ]);
    harness::stack::envoy::render(&spliced, &vars)
}

fn splice(template: &str, snippet: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(template.len() + snippet.len());
    let mut found = 0;
    for line in template.lines() {
        if line.trim() == PLACEHOLDER {
            found += 1;
            let indent = &line[..line.len() - line.trim_start().len()];
            for s in snippet.lines() {
                if !s.trim().is_empty() {
                    out.push_str(indent);
                    out.push_str(s);
                }
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if found != 1 {
        bail!("the bench template needs {PLACEHOLDER} alone on exactly one line, found {found}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            admin_port: 1,
            listen_port: 2,
            upstream_port: 3,
            token_api_port: 4,
            filter_wasm: "/f.wasm".into(),
            empty_wasm: "/e.wasm".into(),
        }
    }

    #[test]
    fn splices_with_the_placeholder_indent() {
        let t = "a:\n  filters:\n  ${HTTP_FILTERS}\n  - router\n";
        let out = render(t, "- one\n  x: 1\n", &Chain::None, &inputs()).unwrap();
        assert_eq!(out, "a:\n  filters:\n  - one\n    x: 1\n  - router\n");
    }

    #[test]
    fn placeholder_must_appear_once() {
        let e = render("x: 1\n", "", &Chain::None, &inputs()).unwrap_err();
        assert!(e.to_string().contains("found 0"), "{e}");
        let two = "${HTTP_FILTERS}\n${HTTP_FILTERS}\n";
        assert!(render(two, "", &Chain::None, &inputs()).is_err());
    }

    #[test]
    fn every_shipped_variant_renders_completely() {
        let dir = harness::stack::workspace_root().join("envoy/bench");
        let chains = [
            Chain::None,
            Chain::Empty {
                probe_ops: String::new(),
            },
            Chain::Empty {
                probe_ops: "time,set".into(),
            },
            Chain::McpAuth {
                config: serde_json::json!({"cache": {"ttl_s": 300}}),
            },
            Chain::ExtAuthz,
        ];
        for chain in chains {
            let out = render_from(&dir, &chain, &inputs()).unwrap();
            assert!(!out.contains("${"), "{chain:?}: {out}");
            assert!(out.contains("port_value: 3 "), "{chain:?}");
            match &chain {
                Chain::None => assert!(!out.contains("envoy.filters.http.wasm")),
                Chain::Empty { probe_ops } => {
                    assert!(out.contains("/e.wasm"));
                    assert!(out.contains(&format!("value: \"{probe_ops}\"")));
                }
                Chain::McpAuth { .. } => {
                    assert!(out.contains("/f.wasm"));
                    assert!(out.contains(r#"{"cache":{"ttl_s":300}}"#));
                }
                Chain::ExtAuthz => {
                    assert!(out.contains("path_override: /api/v1/mcptokens/introspect"))
                }
            }
        }
    }

    #[test]
    fn probe_ops_cannot_break_out_of_the_yaml_string() {
        let chain = Chain::Empty {
            probe_ops: "time\"\n".into(),
        };
        assert!(render("${HTTP_FILTERS}\n", "", &chain, &inputs()).is_err());
    }
}
