//! The `mcpgw` binary against a running Spin host (both spawned processes):
//! every token verb, `audit`, `--json`, and the error messages people see.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN_KEY: &str = "cli-test-admin-key";

struct Server {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mcpgw() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mcpgw"));
    c.env_remove("MCPGW_API")
        .env_remove("MCPGW_KEY")
        .env_remove("MCPGW_TOKEN");
    c
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn serve() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = harness::stack::free_port().unwrap();
    let child = mcpgw()
        .args(["serve-token-api", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data")
        .arg(dir.path())
        .arg("--manifest")
        .arg(root().join("token-api/spin.toml"))
        .arg("--variable")
        .arg(format!(
            "admin_key_sha256={}",
            mcpgw_token::format::sha256_hex(ADMIN_KEY)
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mcpgw serve-token-api");
    let api = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve-token-api did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        api,
        _dir: dir,
    }
}

fn run(server: &Server, key: Option<&str>, args: &[&str]) -> Output {
    let mut c = mcpgw();
    c.env("MCPGW_API", &server.api);
    if let Some(k) = key {
        c.env("MCPGW_KEY", k);
    }
    c.args(args).output().expect("run mcpgw")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(o: Output) -> String {
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "mcpgw failed\nstdout: {out}\nstderr: {err}"
    );
    out
}

fn fails(o: Output) -> String {
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "mcpgw should have failed\nstdout: {out}"
    );
    err
}

#[test]
fn token_verbs_tables_and_json() {
    let s = serve();
    let admin = Some(ADMIN_KEY);

    // create: the raw token once, with a clear instruction.
    let out = ok(run(
        &s,
        admin,
        &[
            "token", "create", "--tenant", "acme", "--name", "laptop", "--ttl", "30d",
        ],
    ));
    assert!(out.contains("Store this token now"), "{out}");
    let raw = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("token line")
        .to_string();
    assert!(mcpgw_token::format::validate(&raw).is_ok(), "{raw}");
    let id = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("id:"))
        .map(|s| s.trim().to_string())
        .expect("id line");

    // --json create for scripts, with scopes.
    let created: Value = serde_json::from_str(&ok(run(
        &s,
        admin,
        &[
            "--json",
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "ci",
            "--scope",
            "mcp:tools/list",
            "--scope",
            "tokens:read",
        ],
    )))
    .unwrap();
    assert_eq!(
        created["scopes"],
        serde_json::json!(["mcp:tools/list", "tokens:read"])
    );
    assert!(created["token"]
        .as_str()
        .unwrap()
        .starts_with("mcpctl_pat_"));

    // list: a table with both, never a secret.
    let list = ok(run(&s, admin, &["token", "list", "--tenant", "acme"]));
    assert!(list.starts_with("ID"), "{list}");
    assert!(
        list.contains("laptop") && list.contains("ci") && list.contains("2 token(s)"),
        "{list}"
    );
    assert!(!list.contains(&raw[11..]), "list leaked the secret");

    // describe, revoke (idempotent), list without/with revoked, delete, then 404.
    let d = ok(run(&s, admin, &["token", "describe", &id]));
    assert!(d.contains("laptop") && d.contains("active"), "{d}");
    assert!(!d.contains(&raw), "describe leaked the token");
    let r = ok(run(&s, admin, &["token", "revoke", &id]));
    assert!(r.contains("revoked"), "{r}");
    ok(run(&s, admin, &["token", "revoke", &id]));
    let live = ok(run(&s, admin, &["token", "list", "--tenant", "acme"]));
    assert!(!live.contains("laptop"), "{live}");
    let all = ok(run(
        &s,
        admin,
        &["token", "list", "--tenant", "acme", "--include-revoked"],
    ));
    assert!(all.contains("laptop") && all.contains("revoked"), "{all}");
    ok(run(&s, admin, &["token", "delete", &id]));
    let gone = fails(run(&s, admin, &["token", "describe", &id]));
    assert!(
        gone.contains("404") && gone.contains("mcpgw token list"),
        "{gone}"
    );

    // audit shows the lifecycle.
    let audit = ok(run(&s, admin, &["audit", "--tenant", "acme"]));
    for event in ["created", "revoked", "deleted"] {
        assert!(audit.contains(event), "audit lacks {event}: {audit}");
    }
    let audit_json: Value =
        serde_json::from_str(&ok(run(&s, admin, &["--json", "audit", "--token-id", &id]))).unwrap();
    assert!(
        audit_json["events"].as_array().unwrap().len() >= 3,
        "{audit_json}"
    );
}

#[test]
fn errors_say_what_to_do() {
    let s = serve();
    // No credential.
    let e = fails(run(&s, None, &["token", "list"]));
    assert!(e.contains("401") && e.contains("MCPGW_KEY"), "{e}");
    // Wrong key: refused, and the key is never echoed.
    let e = fails(run(&s, Some("not-the-key"), &["token", "list"]));
    assert!(e.contains("401") && !e.contains("not-the-key"), "{e}");
    // A field error names the field.
    let e = fails(run(
        &s,
        Some(ADMIN_KEY),
        &["token", "create", "--tenant", "_system", "--name", "x"],
    ));
    assert!(e.contains("400") && e.contains("tenant"), "{e}");
    // 409 on a taken name, with advice.
    ok(run(
        &s,
        Some(ADMIN_KEY),
        &["token", "create", "--tenant", "acme", "--name", "dup"],
    ));
    let e = fails(run(
        &s,
        Some(ADMIN_KEY),
        &["token", "create", "--tenant", "acme", "--name", "dup"],
    ));
    assert!(e.contains("409") && e.contains("--name"), "{e}");
    // 403 names the missing scope: a token with tokens:read only tries to create.
    let reader: Value = serde_json::from_str(&ok(run(
        &s,
        Some(ADMIN_KEY),
        &[
            "--json",
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "reader",
            "--scope",
            "tokens:read",
        ],
    )))
    .unwrap();
    let reader = reader["token"].as_str().unwrap().to_string();
    let e = fails(run(
        &s,
        Some(&reader),
        &["token", "create", "--tenant", "acme", "--name", "y"],
    ));
    assert!(e.contains("403") && e.contains("tokens:write"), "{e}");
    assert!(!e.contains(&reader), "the key was echoed: {e}");
    // Unreachable API: says how to start it.
    let mut c = mcpgw();
    let o = c
        .env(
            "MCPGW_API",
            format!("http://127.0.0.1:{}", harness::stack::free_port().unwrap()),
        )
        .env("MCPGW_KEY", ADMIN_KEY)
        .args(["token", "list"])
        .output()
        .unwrap();
    let e = fails(o);
    assert!(
        e.contains("cannot reach the token API") && e.contains("serve-token-api"),
        "{e}"
    );
}

#[test]
fn check_explains_an_unreachable_endpoint() {
    let port = harness::stack::free_port().unwrap();
    let o = mcpgw()
        .args([
            "check",
            &format!("http://127.0.0.1:{port}/mcp"),
            "--token",
            "x",
            "--timeout-ms",
            "2000",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAIL") && out.contains("cannot connect"),
        "{out}"
    );
}

#[test]
fn rate_limits_are_set_shown_and_changed() {
    let s = serve();
    let admin = Some(ADMIN_KEY);
    let out = ok(run(
        &s,
        admin,
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "agent",
            "--rate-limit",
            "600/m burst 50",
        ],
    ));
    assert!(
        out.contains("rate_limit:") && out.contains("600/m burst 50"),
        "{out}"
    );
    let id = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("id:"))
        .map(|s| s.trim().to_string())
        .expect("id line");
    ok(run(
        &s,
        admin,
        &["token", "create", "--tenant", "acme", "--name", "free"],
    ));
    let list = ok(run(&s, admin, &["token", "list", "--tenant", "acme"]));
    assert!(
        list.lines().next().unwrap().contains("RATE LIMIT"),
        "{list}"
    );
    let row = |name: &str| {
        list.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not in {list}"))
            .to_string()
    };
    assert!(row("agent").contains("600/m burst 50"), "{list}");
    assert!(row("free").contains("none"), "{list}");

    let out = ok(run(
        &s,
        admin,
        &["token", "update", &id, "--rate-limit", "5/10s"],
    ));
    assert!(out.contains("is now 5/10s"), "{out}");
    let d: Value =
        serde_json::from_str(&ok(run(&s, admin, &["--json", "token", "describe", &id]))).unwrap();
    assert_eq!(
        d["rate_limit"],
        serde_json::json!({"requests": 5, "window_s": 10, "burst": 5})
    );
    ok(run(
        &s,
        admin,
        &["token", "update", &id, "--rate-limit", "none"],
    ));
    let d = ok(run(&s, admin, &["token", "describe", &id]));
    assert!(d.contains("rate_limit:") && d.contains("none"), "{d}");
    let audit = ok(run(&s, admin, &["audit", "--token-id", &id]));
    assert!(audit.contains("rate_limit_changed"), "{audit}");

    // A limit the CLI cannot read is refused before any request, saying how
    // to write one; a revoked token cannot be changed.
    let e = fails(run(
        &s,
        admin,
        &["token", "update", &id, "--rate-limit", "lots"],
    ));
    assert!(e.contains("--rate-limit") && e.contains("60/m"), "{e}");
    let e = fails(run(
        &s,
        admin,
        &[
            "token",
            "create",
            "--tenant",
            "acme",
            "--name",
            "z",
            "--rate-limit",
            "0/m",
        ],
    ));
    assert!(e.contains("requests must be between 1"), "{e}");
    ok(run(&s, admin, &["token", "revoke", &id]));
    let e = fails(run(
        &s,
        admin,
        &["token", "update", &id, "--rate-limit", "1/s"],
    ));
    assert!(e.contains("409") && e.contains("mint a new one"), "{e}");
}

#[test]
fn audit_reads_the_gateway_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let line = |time: &str, status: u16, record: Value| {
        serde_json::json!({"time": time, "method": "POST", "path": "/mcp", "status": status,
            "duration_ms": 3, "bytes_received": 90, "bytes_sent": 300,
            "mcp": record.to_string()})
        .to_string()
    };
    let allow = serde_json::json!({"decision": "allow", "cache": "hit", "token_id": "tok_a",
        "token_name": "laptop", "tenant": "acme", "project": "default", "method": "tools/call",
        "name": "whoami"});
    let limited = serde_json::json!({"decision": "deny", "reason": "rate_limited", "cache": "hit",
        "token_id": "tok_a", "token_name": "laptop", "tenant": "acme", "method": "tools/call",
        "name": "whoami", "rate_limit": "1/m", "retry_after_s": 60});
    let other = serde_json::json!({"decision": "allow", "token_id": "tok_b", "tenant": "globex",
        "method": "tools/call", "name": "list_findings"});
    let text = [
        line("2026-12-01T10:00:00.000Z", 200, allow.clone()),
        line("2026-12-01T10:00:01.000Z", 429, limited),
        line("2026-12-01T10:00:02.000Z", 200, other),
        "not a json line".to_string(),
        line("2026-12-02T10:00:00.000Z", 200, allow),
    ]
    .join("\n");
    std::fs::write(&log, text).unwrap();
    let log = log.to_str().unwrap();
    let audit = |args: &[&str]| {
        let mut all = vec!["audit", "--gateway-log", log];
        all.extend_from_slice(args);
        ok(mcpgw().args(&all).output().unwrap())
    };
    let table = audit(&["--token-id", "tok_a"]);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("3 request(s)"), "{table}");
    assert!(
        table.contains("1 line(s) not in the gateway's JSON format"),
        "{table}"
    );
    assert!(!table.contains("list_findings"), "{table}");
    let denied = audit(&["--decision", "deny"]);
    assert!(
        denied.contains("rate_limited") && denied.contains("1 request(s)"),
        "{denied}"
    );
    let by_tool = audit(&["--tool", "list_*"]);
    assert!(
        by_tool.contains("tok_b") && by_tool.contains("1 request(s)"),
        "{by_tool}"
    );
    let window = audit(&["--since", "2026-12-01T10:00:01Z", "--until", "2026-12-02"]);
    assert!(window.contains("2 request(s)"), "{window}");
    let status = audit(&["--status", "429"]);
    assert!(status.contains("1 request(s)"), "{status}");
    let json: Value = serde_json::from_str(&ok(mcpgw()
        .args([
            "--json",
            "audit",
            "--gateway-log",
            log,
            "--reason",
            "rate_limited",
        ])
        .output()
        .unwrap()))
    .unwrap();
    assert_eq!(json["events"].as_array().unwrap().len(), 1);
    assert_eq!(json["events"][0]["retry_after_s"], 60);
    assert_eq!(json["events"][0]["status"], 429);
    // The log filters need --gateway-log; a missing file says what it is.
    let e = fails(mcpgw().args(["audit", "--tool", "x"]).output().unwrap());
    assert!(e.contains("--gateway-log"), "{e}");
    let e = fails(
        mcpgw()
            .args(["audit", "--gateway-log", "/nonexistent/access.log"])
            .output()
            .unwrap(),
    );
    assert!(
        e.contains("access log") && e.contains(".data/envoy/access.log"),
        "{e}"
    );
    let e = fails(
        mcpgw()
            .args(["audit", "--gateway-log", log, "--since", "yesterday"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("--since") && e.contains("15m"), "{e}");
}
