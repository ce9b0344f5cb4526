//! The deploy kit (`deploy/`): every manifest parses as YAML and carries the
//! filter configuration the harness runs (`stack::default_filter_config`),
//! fail-closed, with its token API cluster defined where the platform makes
//! it; the production Envoy bootstrap passes `envoy --mode validate` with the
//! real `filter.wasm`; and `mcpgw package` writes an image `skopeo` reads.
//!
//! Needs `./just build`, `./just envoy` and `./just skopeo` (`./just test`
//! runs all three) and `openssl` for a throwaway certificate.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::package::{media, Variant, PLUGIN_FILE, ROOT_ID, WASM_TAG_SUFFIX};
use harness::stack::{self, workspace_root};
use serde::Deserialize;
use serde_json::{json, Value};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every YAML document of a file under `deploy/`, as JSON values.
fn documents(rel: &str) -> Vec<Value> {
    let path = workspace_root().join("deploy").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected");
    found[0]
}

/// Where a manifest's filter calls the token API.
struct TokenApiPlace {
    cluster: String,
    feed_cluster: String,
    authority: String,
}

/// Checks `config` is the harness's filter configuration apart from where the
/// token API is, which the caller matches with what the platform defines.
fn same_filter_config(what: &str, config: &Value) -> TokenApiPlace {
    let mut ours = config.clone();
    let mut want = stack::default_filter_config();
    let mut take = |key: &str| {
        want["token_api"].as_object_mut().unwrap().remove(key);
        let v = ours["token_api"]
            .as_object_mut()
            .and_then(|t| t.remove(key))
            .unwrap_or_else(|| panic!("{what}: no token_api.{key}"));
        v.as_str().unwrap_or_default().to_string()
    };
    let place = TokenApiPlace {
        cluster: take("cluster"),
        feed_cluster: take("feed_cluster"),
        authority: take("authority"),
    };
    assert_eq!(
        ours, want,
        "{what}: the filter configuration differs from the harness's \
         (harness/src/stack/mod.rs default_filter_config)"
    );
    // Feed polls get their own connection pool, as in envoy/gateway.yaml.
    assert_ne!(place.cluster, place.feed_cluster, "{what}");
    place
}

#[test]
fn istio_wasmplugin_is_fail_closed_and_calls_its_service_entry() {
    let docs = documents("istio/wasmplugin.yaml");
    let plugin = &kind(&docs, "WasmPlugin")["spec"];
    let place = same_filter_config("WasmPlugin", &plugin["pluginConfig"]);
    let authority = place.authority.as_str();
    assert_eq!(plugin["failStrategy"], "FAIL_CLOSE");
    assert_eq!(plugin["pluginName"], ROOT_ID);
    assert_eq!(plugin["type"], "HTTP");
    assert_eq!(plugin["phase"], "AUTHN");
    assert_eq!(
        plugin["url"],
        format!("oci://REGISTRY/mcpgw/filter:{VERSION}"),
        "the tag `./just package` writes"
    );

    let entry = &kind(&docs, "ServiceEntry")["spec"];
    assert_eq!(entry["hosts"], json!([authority]));
    let rule = &kind(&docs, "DestinationRule")["spec"];
    assert_eq!(rule["host"], authority);
    // Istio names the cluster of a ServiceEntry port outbound|<port>||<host>.
    for cluster in [&place.cluster, &place.feed_cluster] {
        let port = entry["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| *cluster == format!("outbound|{}||{authority}", p["number"]))
            .unwrap_or_else(|| panic!("no ServiceEntry port makes {cluster}"));
        assert_eq!(port["protocol"], "HTTP");
        assert_eq!(port["targetPort"], 443);
        // The callouts leave as TLS: the DestinationRule originates it.
        let tls = rule["trafficPolicy"]["portLevelSettings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["port"]["number"] == port["number"])
            .map(|s| &s["tls"])
            .unwrap_or_else(|| panic!("no TLS settings for {cluster}"));
        assert_eq!(tls["mode"], "SIMPLE");
        assert_eq!(tls["sni"], authority);
        assert_eq!(tls["subjectAltNames"], json!([authority]));
    }
}

#[test]
fn envoy_gateway_policy_is_fail_closed_and_calls_its_backend_over_tls() {
    let docs = documents("envoy-gateway/extension-policy.yaml");
    let policy = &kind(&docs, "EnvoyExtensionPolicy")["spec"];
    assert_eq!(policy["targetRefs"][0]["kind"], "Gateway");
    let wasm = &policy["wasm"][0];
    let place = same_filter_config("EnvoyExtensionPolicy", &wasm["config"]);
    let authority = place.authority.as_str();
    assert_eq!(wasm["failOpen"], false);
    assert_eq!(wasm["rootID"], ROOT_ID);
    assert_eq!(wasm["code"]["type"], "Image");
    assert_eq!(
        wasm["code"]["image"]["url"],
        format!("REGISTRY/mcpgw/filter:{VERSION}")
    );

    let backend = kind(&docs, "Backend");
    let fqdn = &backend["spec"]["endpoints"][0]["fqdn"];
    assert_eq!(fqdn["hostname"], authority);
    assert_eq!(fqdn["port"], 443);

    // Envoy Gateway names a route rule's cluster httproute/<ns>/<name>/rule/<i>.
    let route = kind(&docs, "HTTPRoute");
    let meta = &route["metadata"];
    let prefix = format!(
        "httproute/{}/{}/rule/",
        meta["namespace"].as_str().unwrap(),
        meta["name"].as_str().unwrap()
    );
    for cluster in [&place.cluster, &place.feed_cluster] {
        let index: usize = cluster
            .strip_prefix(&prefix)
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("{cluster} is not a rule of {prefix}…"));
        let rule = &route["spec"]["rules"][index];
        assert_eq!(rule["backendRefs"][0]["name"], backend["metadata"]["name"]);
        assert_eq!(rule["backendRefs"][0]["kind"], "Backend");
        // The rule only matches a header the filter strips from every client.
        let header = rule["matches"][0]["headers"][0]["name"].as_str().unwrap();
        assert!(header.starts_with("x-mcp-"), "{header}");
    }

    let tls = &kind(&docs, "BackendTLSPolicy")["spec"];
    assert_eq!(tls["targetRefs"][0]["kind"], "Backend");
    assert_eq!(tls["targetRefs"][0]["name"], backend["metadata"]["name"]);
    assert_eq!(tls["validation"]["hostname"], authority);
}

#[test]
fn spinapp_takes_the_admin_key_hash_from_a_secret_and_only_known_variables() {
    let docs = documents("spinkube/spinapp.yaml");
    let app = &kind(&docs, "SpinApp")["spec"];
    let secrets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Secret").collect();
    let secret_has = |name: &Value, key: &Value| {
        secrets.iter().any(|s| {
            s["metadata"]["name"] == *name
                && key
                    .as_str()
                    .is_some_and(|k| s["stringData"].get(k).is_some())
        })
    };

    let spin_toml: toml::Value = toml::from_str(
        &std::fs::read_to_string(workspace_root().join("token-api/spin.toml")).unwrap(),
    )
    .unwrap();
    let declared = spin_toml["variables"].as_table().unwrap();
    let given: Vec<&Value> = app["variables"].as_array().unwrap().iter().collect();
    for v in &given {
        let name = v["name"].as_str().unwrap();
        assert!(
            declared.contains_key(name),
            "{name} is not a variable of token-api/spin.toml"
        );
    }
    for (name, decl) in declared {
        if decl.get("required").and_then(toml::Value::as_bool) == Some(true) {
            let v = given
                .iter()
                .find(|v| v["name"] == name.as_str())
                .unwrap_or_else(|| panic!("required variable {name} is not set"));
            // Secrets come from a Secret, never inline.
            let r = &v["valueFrom"]["secretKeyRef"];
            assert!(v.get("value").is_none(), "{name} is inline");
            assert!(
                secret_has(&r["name"], &r["key"]),
                "{name}: no such Secret key"
            );
        }
    }
    let runtime = &app["runtimeConfig"]["loadFromSecret"];
    assert!(secret_has(runtime, &json!("runtime-config.toml")));
    assert_eq!(app["executor"], "containerd-shim-spin");
}

/// The production bootstrap with its file paths pointed at `dir`.
fn bootstrap_in(dir: &Path) -> String {
    let wasm = stack::filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    std::fs::read_to_string(workspace_root().join("deploy/envoy/envoy.yaml"))
        .unwrap()
        .replace("/etc/envoy/filter.wasm", wasm.to_str().unwrap())
        .replace("/etc/envoy/tls/", &format!("{}/", dir.display()))
}

#[test]
fn production_bootstrap_is_hardened_and_carries_the_harness_filter_config() {
    let docs = documents("envoy/envoy.yaml");
    let boot = &docs[0];
    assert_eq!(
        boot["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    let listener = &boot["static_resources"]["listeners"][0];
    let chain = &listener["filter_chains"][0];
    assert!(chain["transport_socket"]["typed_config"]["@type"]
        .as_str()
        .unwrap()
        .ends_with("DownstreamTlsContext"));
    let hcm = &chain["filters"][0]["typed_config"];
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(hcm["merge_slashes"], true);
    assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
    assert!(hcm["max_request_headers_kb"].as_u64().is_some());
    assert!(hcm["common_http_protocol_options"]["max_headers_count"]
        .as_u64()
        .is_some());
    let log = &hcm["access_log"][0]["typed_config"]["log_format"]["json_format"];
    assert!(log.is_object(), "JSON access log");
    assert!(
        !log.to_string()
            .to_ascii_lowercase()
            .contains("authorization"),
        "the access log must never name the Authorization header"
    );

    let first = &hcm["http_filters"][0];
    assert_eq!(first["name"], "envoy.filters.http.wasm", "the filter first");
    let wasm = &first["typed_config"]["config"];
    assert_eq!(wasm["failure_policy"], "FAIL_CLOSED");
    assert_eq!(wasm["root_id"], ROOT_ID);
    let config: Value =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    let place = same_filter_config("deploy/envoy/envoy.yaml", &config);

    let clusters = boot["static_resources"]["clusters"].as_array().unwrap();
    for cluster in [&place.cluster, &place.feed_cluster] {
        let api = clusters
            .iter()
            .find(|c| c["name"] == cluster.as_str())
            .unwrap_or_else(|| panic!("no cluster {cluster}"));
        let tls = &api["transport_socket"]["typed_config"];
        assert!(tls["@type"]
            .as_str()
            .unwrap()
            .ends_with("UpstreamTlsContext"));
        assert_eq!(tls["sni"], place.authority);
        let validation = &tls["common_tls_context"]["validation_context"];
        assert!(validation["trusted_ca"].is_object(), "{cluster}: no CA");
        assert_eq!(
            validation["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            place.authority
        );
        assert!(
            api["circuit_breakers"].is_object(),
            "{cluster}: no breakers"
        );
    }
}

#[test]
fn production_bootstrap_passes_envoy_validate_with_the_real_filter() {
    let dir = tempfile::tempdir().unwrap();
    throwaway_certificate(dir.path());
    let envoy = stack::envoy::find_binary().unwrap_or_else(|e| panic!("{e}"));
    let validate = |config: &str| {
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "--log-level", "warn", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let good = bootstrap_in(dir.path());
    let (ok, log) = validate(&good);
    assert!(ok && log.contains("OK"), "envoy --mode validate:\n{log}");

    // Validation loads the module and runs its configuration check, so a bad
    // filter configuration in the bootstrap fails here, not in production.
    let bad = good.replace("\"ttl_s\": 300", "\"ttl_s\": 0");
    assert_ne!(bad, good);
    let (ok, log) = validate(&bad);
    assert!(
        !ok,
        "a bad filter configuration must fail validation:\n{log}"
    );
    assert!(log.contains("mcp_auth"), "{log}");
}

/// A self-signed certificate and key as `tls.crt` / `tls.key` in `dir`.
fn throwaway_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=gateway.test", "-keyout"])
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed for a throwaway certificate ({e}); install it (Debian: apt-get install openssl)")
        });
    assert!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn skopeo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("skopeo not found ({e}): run `./just skopeo` (installs it from Debian)")
        });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `skopeo copy` of one tag into a `dir:` layout, which checks every blob
/// against its digest and size on the way.
fn copy_out(layout: &str, tag: &str, to: PathBuf) -> PathBuf {
    let (ok, _, stderr) = skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{layout}:{tag}"),
        &format!("dir:{}", to.display()),
    ]);
    assert!(ok, "skopeo copy {tag}: {stderr}");
    to
}

/// The file a `skopeo copy … dir:` wrote for a blob.
fn copied_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(dir.join(digest.trim_start_matches("sha256:"))).unwrap()
}

#[test]
fn mcpgw_package_writes_an_image_skopeo_reads_and_copies() {
    let wasm_path: PathBuf = stack::filter_wasm().unwrap_or_else(|e| panic!("{e}"));
    let wasm = std::fs::read(&wasm_path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("filter-oci");
    let out = Command::new(env!("CARGO_BIN_EXE_mcpgw"))
        .args(["--json", "package", "--out"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mcpgw package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["wasm_size"], wasm.len());
    let tags = report["tags"].as_array().unwrap();
    let tag_of = |variant: Variant| {
        let v = serde_json::to_value(variant).unwrap();
        let t = tags.iter().find(|t| t["variant"] == v).unwrap();
        (
            t["tag"].as_str().unwrap().to_string(),
            t["digest"].as_str().unwrap().to_string(),
        )
    };
    let layout = layout.to_str().unwrap();

    // The compat image, as skopeo understands it.
    let (tag, digest) = tag_of(Variant::Compat);
    assert_eq!(tag, VERSION);
    let (ok, stdout, stderr) = skopeo(&["inspect", &format!("oci:{layout}:{tag}")]);
    assert!(ok, "skopeo inspect: {stderr}");
    let seen: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(seen["Digest"], digest);
    assert_eq!(seen["Architecture"], "wasm");
    assert_eq!(seen["Os"], "wasip1");
    let layers = seen["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{seen}");
    let (ok, raw, stderr) = skopeo(&["inspect", "--raw", &format!("oci:{layout}:{tag}")]);
    assert!(ok, "skopeo inspect --raw: {stderr}");
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["layers"][0]["mediaType"], media::LAYER_TAR_GZIP);
    assert_eq!(manifest["layers"][0]["digest"], layers[0]);
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );

    // A copy checks every blob against its digest; the copied layer unpacks
    // to the very module that was built.
    let copy = copy_out(layout, &tag, dir.path().join("compat-copy"));
    let layer = copied_blob(&copy, layers[0].as_str().unwrap());
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.path().unwrap().to_str(), Some(PLUGIN_FILE));
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut unpacked).unwrap();
    assert!(
        unpacked == wasm,
        "the layer's plugin.wasm is not filter.wasm"
    );

    // The oci variant: custom media types skopeo carries as they are.
    let (tag, digest) = tag_of(Variant::Oci);
    assert_eq!(tag, format!("{VERSION}{WASM_TAG_SUFFIX}"));
    let (ok, raw, stderr) = skopeo(&["inspect", "--raw", &format!("oci:{layout}:{tag}")]);
    assert!(ok, "skopeo inspect --raw: {stderr}");
    assert_eq!(harness::package::digest(raw.as_bytes()), digest);
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    let module = &manifest["layers"][1];
    assert_eq!(module["mediaType"], media::WASM_LAYER);
    let copy = copy_out(layout, &tag, dir.path().join("oci-copy"));
    assert!(copied_blob(&copy, module["digest"].as_str().unwrap()) == wasm);
}
