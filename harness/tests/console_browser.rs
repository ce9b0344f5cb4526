//! The token console in a real browser: the whole stack (real Envoy with
//! `filter.wasm`, `token_api.wasm` on the Spin-compatible host, demo backends)
//! and `harness/tests/console/console.test.mjs`, which drives Debian's Chromium
//! headless through `playwright-core`: wrong key, sign-in, mint with the scope
//! builder, the token shown once and copied, the token at the gateway, revoke
//! and the gateway's refusal within one poll period, a hostile name kept as
//! text, delete, a read-only sign-in, phone width. Screenshots of each page go
//! to `target/console-screenshots/`.
//!
//! Needs `just build`, `just envoy` and `just browser` (the `just test` recipe
//! runs all three); fails, never skips, when something is missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::stack::{self, Ports, Stack, StackOptions};
use serde_json::json;

const POLL_MS: u64 = 300;
/// The browser run takes about half a minute; this bounds a hung browser.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium_against_the_real_stack() {
    let root = stack::workspace_root();
    let script_dir = root.join("harness/tests/console");
    let browser = chromium();
    assert!(
        browser.is_file(),
        "{} is missing: run `just browser` (installs Debian's chromium as root), or set CHROMIUM",
        browser.display()
    );
    assert!(
        script_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `just browser` (npm ci in harness/tests/console)"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = stack::default_filter_config();
    config["revocation_poll_ms"] = json!(POLL_MS);
    let stack = Stack::start(StackOptions {
        data_dir: dir.path().to_path_buf(),
        ports: Ports::default(),
        admin_key: stack::random_admin_key().unwrap(),
        filter_config: config,
        envoy_concurrency: 2,
    })
    .await
    .unwrap_or_else(|e| panic!("stack did not start: {e:#}"));

    let screenshots = root.join("target/console-screenshots");
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(script_dir.join("console.test.mjs"))
        .current_dir(&script_dir)
        .env("CONSOLE_URL", stack.console_url())
        .env("API_URL", stack.token_api_url())
        .env("GATEWAY_MCP", format!("{}/mcp", stack.gateway_url()))
        .env("ADMIN_KEY", &stack.admin_key)
        .env("POLL_MS", POLL_MS.to_string())
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &browser)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (Node 20 is required): {e}"));
    let out = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output()).await;
    stack.stop().await;
    let out = out
        .unwrap_or_else(|_| panic!("the browser run took over {BROWSER_TIMEOUT:?}"))
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    eprintln!(
        "browser run: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        screenshots.display()
    );
    assert!(
        out.status.success(),
        "the console's browser test failed (see the step marked FAIL above)"
    );
    // The script's own count: every step ran, none failed.
    assert!(
        stdout.lines().any(|l| l.starts_with("14 passed, 0 failed")),
        "not every browser step ran:\n{stdout}"
    );
    for shot in [
        "01-sign-in-error",
        "04-shown-once",
        "08-token-revoked",
        "10-read-only",
        "13-phone-mint",
    ] {
        assert!(
            screenshots.join(format!("{shot}.png")).is_file(),
            "screenshot {shot}.png missing"
        );
    }
}
