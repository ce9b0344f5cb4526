//! `mcpgw up`: the whole local stack in one command, with ready-to-paste
//! client configurations. State lives in the data dir, so a second run reuses
//! the admin key and the demo tokens instead of minting duplicates.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::stack::{
    self, Ports, Stack, StackExtras, StackOptions, TokenApiOptions, TokenStore, DEMO_TENANTS,
};

use super::{StoreArg, UpArgs};

/// A demo token that sees (and may use) only part of acme's backend: its
/// lists through the gateway show only that part.
const LIMITED: &str = "acme-limited";
const LIMITED_SCOPES: [&str; 8] = [
    "mcp:tools/list",
    "mcp:tools/call:whoami",
    "mcp:tools/call:list_*",
    "mcp:prompts/list",
    "mcp:prompts/get:triage_*",
    "mcp:resources/list",
    "mcp:resources/templates/list",
    "mcp:resources/read:demo://acme/public/*",
];

/// What `up` remembers between runs (the file is 0600: it holds secrets).
#[derive(Debug, Default, Serialize, Deserialize)]
struct DemoState {
    admin_key: String,
    /// tenant → raw demo token.
    tokens: std::collections::BTreeMap<String, String>,
}

pub async fn run(a: UpArgs) -> anyhow::Result<()> {
    let store = match (a.store, a.postgres_url.clone()) {
        (StoreArg::Sqlite, Some(_)) => {
            anyhow::bail!("--postgres-url needs --store postgres")
        }
        (StoreArg::Sqlite, None) => TokenStore::Sqlite,
        (StoreArg::Postgres, url) => TokenStore::Postgres { url },
    };
    if a.token_api_instances > 1 && store == TokenStore::Sqlite {
        anyhow::bail!(
            "several token API instances need one shared store: add --store postgres \
             (SQLite keeps the tokens in a file of one instance)"
        );
    }
    std::fs::create_dir_all(&a.data).with_context(|| format!("creating {}", a.data.display()))?;
    let state_path = a.data.join("demo.json");
    let mut state = load(&state_path)?;
    if state.admin_key.is_empty() {
        state.admin_key = stack::random_admin_key()?;
    }
    let mut ports = Ports::well_known();
    ports.gateway = a.port;
    let stack = Stack::start_full(
        StackOptions {
            data_dir: a.data.clone(),
            ports,
            admin_key: state.admin_key.clone(),
            filter_config: stack::default_filter_config(),
            envoy_concurrency: 2,
        },
        StackExtras::default(),
        TokenApiOptions {
            store,
            instances: usize::from(a.token_api_instances),
            durable_postgres: true,
            variables: Vec::new(),
        },
    )
    .await?;

    let http = reqwest::Client::new();
    let demo = DEMO_TENANTS
        .iter()
        .map(|t| (t.to_string(), *t, None))
        .chain([(LIMITED.to_string(), "acme", Some(&LIMITED_SCOPES[..]))]);
    for (key, tenant, scopes) in demo {
        let live = match state.tokens.get(&key) {
            Some(tok) => is_active(&http, &stack.token_api_url(), tok).await?,
            None => false,
        };
        if !live {
            let name = format!("demo-{key}-{}", unix_seconds());
            let mut body = json!({"name": name, "tenant": tenant, "ttl": "30d"});
            if let Some(scopes) = scopes {
                body["scopes"] = json!(scopes);
            }
            let created = stack.mint(body).await?;
            let raw = created["token"].as_str().unwrap_or_default().to_string();
            state.tokens.insert(key, raw);
        }
    }
    save(&state_path, &state)?;
    print_banner(&stack, &state, &a.data);

    super::shutdown_signal().await?;
    eprintln!("\nstopping…");
    stack.stop().await;
    Ok(())
}

fn print_banner(stack: &Stack, state: &DemoState, data: &Path) {
    let gw = stack.gateway_url();
    let acme = state.tokens.get("acme").cloned().unwrap_or_default();
    println!(
        r#"
MCP token gateway is up (Ctrl-C stops everything)

  gateway      {gw}/mcp            (per-tenant backends; answers as event streams)
               {gw}/mcp/json       (the same backends, answers as JSON)
               {gw}/mcp/paged      (the same backends, lists in pages of 10)
               {gw}/shared/mcp     (one shared backend, tenant from the trusted header)
  token API    {apis}
  token store  {store}
  console      {console}   (sign in with the admin key below)
  Envoy admin  {admin}
  data         {data}  (admin key and demo tokens in demo.json)
"#,
        apis = (0..stack.token_api_instances())
            .filter_map(|i| stack.token_api_instance_url(i))
            .collect::<Vec<_>>()
            .join("  "),
        console = stack.console_url(),
        store = match stack.postgres_url() {
            Some(url) => format!("PostgreSQL {}", redact_password(url)),
            None => format!("SQLite {}", data.join("token-api").display()),
        },
        admin = stack.envoy.admin,
        data = data.display(),
    );
    for (tenant, tok) in &state.tokens {
        println!("  token for {tenant:<12} {tok}");
    }
    let limited = state.tokens.get(LIMITED).cloned().unwrap_or_default();
    println!(
        r#"
Try it:

  curl -s {gw}/mcp -H "Authorization: Bearer {acme}" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}'

  cargo run -q -p harness --bin mcpgw -- check {gw}/mcp --token {acme} --call whoami

  # acme-limited lists only what it may use: 6 of 24 tools, 1 prompt, the public documents
  cargo run -q -p harness --bin mcpgw -- check {gw}/mcp/json --token {limited} --call whoami

Claude Desktop (claude_desktop_config.json):

{claude}

Cursor (.cursor/mcp.json) / VS Code (.vscode/mcp.json uses "servers" instead of "mcpServers"):

{cursor}

Manage tokens:

  export MCPGW_API={api} MCPGW_KEY={key}
  cargo run -q -p harness --bin mcpgw -- token list
"#,
        api = stack.token_api_url(),
        key = state.admin_key,
        claude = pretty(&json!({"mcpServers": {"acme-via-gateway": {
            "command": "npx",
            "args": ["mcp-remote", format!("{gw}/mcp"), "--header", format!("Authorization: Bearer {acme}")]
        }}})),
        cursor = pretty(&json!({"mcpServers": {"acme-via-gateway": {
            "url": format!("{gw}/mcp"),
            "headers": {"Authorization": format!("Bearer {acme}")}
        }}})),
    );
}

async fn is_active(http: &reqwest::Client, api: &str, token: &str) -> anyhow::Result<bool> {
    let v: Value = http
        .get(format!("{api}/api/v1/mcptokens/introspect"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["active"] == json!(true))
}

fn load(path: &PathBuf) -> anyhow::Result<DemoState> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt: delete it to start over", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DemoState::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the state (it holds the admin key and raw tokens) readable by its
/// owner only, on every write: `mode` at open applies to new files alone, so
/// the permissions are set on a fresh file that then replaces the old one.
fn save(path: &Path, state: &DemoState) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// A PostgreSQL URL fit to print: the password replaced by `***`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // `key=value` form.
        return url
            .split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => kv,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}")
        }
        None => url.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Seconds since the epoch: makes re-minted demo names unique.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn printed_postgres_urls_hide_the_password() {
        assert_eq!(
            redact_password("postgres://mcpgw:s3cret@127.0.0.1:5432/mcpgw"),
            "postgres://mcpgw:***@127.0.0.1:5432/mcpgw"
        );
        assert_eq!(redact_password("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(
            redact_password("host=db password=s3cret user=me"),
            "host=db password=*** user=me"
        );
    }

    #[test]
    fn demo_state_is_owner_only_on_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.json");
        std::fs::write(&path, "{}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &DemoState::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(load(&path.to_path_buf()).is_ok());
        assert!(!path.with_extension("json.tmp").exists());
    }
}
