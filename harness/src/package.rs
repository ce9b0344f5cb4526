//! `filter.wasm` as an OCI image, written to a local OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`) that `skopeo copy` pushes
//! to any registry, for Istio's `WasmPlugin` and Envoy Gateway's
//! `EnvoyExtensionPolicy` to pull.
//!
//! Both pull the "Wasm image" formats and try them in this order:
//!
//! - **compat** (tag `<version>`): one `application/vnd.oci.image.layer.v1.tar+gzip`
//!   layer holding `plugin.wasm`, a standard image config, and the manifest
//!   annotation `module.wasm.image/variant: compat`. Standard media types, so
//!   every registry and OCI tool takes it. The deploy manifests reference it.
//! - **oci** (tag `<version>-wasm`): exactly two layers, the runtime config
//!   (`application/vnd.module.wasm.config.v1+json`) and the raw module
//!   (`application/vnd.module.wasm.content.layer.v1+wasm`), with that runtime
//!   config as the manifest's config too. For registries that accept custom
//!   media types.
//!
//! Output is reproducible: the same `filter.wasm` gives the same digests
//! (tar entry and gzip header carry no time, owner or host).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Media types, as Istio's and Envoy Gateway's image fetchers compare them.
pub mod media {
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
    pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
}

/// The file the compat variant's layer must hold (the fetchers look for it).
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The manifest annotation that marks the compat variant.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const TITLE: &str = "org.opencontainers.image.title";
/// The filter's root context id (`root_id` / `pluginName` / `rootID`).
pub const ROOT_ID: &str = "mcp_auth";
/// The proxy-wasm ABI version the filter exports.
pub const ABI_VERSION: &str = "proxy_abi_version_0_2_1";
/// Suffix of the oci variant's tag.
pub const WASM_TAG_SUFFIX: &str = "-wasm";

/// `sha256:<hex>` of `bytes`, as OCI descriptors name blobs.
pub fn digest(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        mcpgw_token::hex::encode(&Sha256::digest(bytes))
    )
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub annotations: serde_json::Map<String, Value>,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: digest(bytes),
            size: bytes.len() as u64,
            annotations: serde_json::Map::new(),
        }
    }

    fn annotated(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.into());
        self
    }
}

/// Which of the two Wasm image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Compat,
    Oci,
}

/// One image, in memory: its manifest and every blob it names.
#[derive(Debug, Clone)]
pub struct Image {
    pub variant: Variant,
    pub manifest: Vec<u8>,
    pub blobs: Vec<Vec<u8>>,
}

impl Image {
    /// The manifest's descriptor (its digest is the image's digest).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::of(media::MANIFEST, &self.manifest)
    }

    fn from_parts(
        variant: Variant,
        config: (Descriptor, Vec<u8>),
        layers: Vec<(Descriptor, Vec<u8>)>,
        annotations: Value,
    ) -> anyhow::Result<Self> {
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": config.0,
            "layers": layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        });
        if annotations.as_object().is_some_and(|a| !a.is_empty()) {
            manifest["annotations"] = annotations;
        }
        let mut blobs = vec![config.1];
        blobs.extend(layers.into_iter().map(|(_, b)| b));
        Ok(Self {
            variant,
            manifest: serde_json::to_vec(&manifest)?,
            blobs,
        })
    }
}

/// The compat variant: `plugin.wasm` in a tar.gz layer.
pub fn compat_image(wasm: &[u8]) -> anyhow::Result<Image> {
    let tar = plugin_tar(wasm)?;
    let layer = gzip(&tar)?;
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    }))?;
    Image::from_parts(
        Variant::Compat,
        (Descriptor::of(media::IMAGE_CONFIG, &config), config),
        vec![(
            Descriptor::of(media::LAYER_TAR_GZIP, &layer).annotated(TITLE, PLUGIN_FILE),
            layer,
        )],
        json!({ VARIANT_ANNOTATION: "compat" }),
    )
}

/// The runtime config of the oci variant: the target runtime, the ABI and
/// the root ids the module registers.
pub fn runtime_config() -> Value {
    json!({
        "type": "envoy_proxy",
        "abiVersions": [ABI_VERSION],
        "config": {"root_ids": [ROOT_ID]},
    })
}

/// The oci variant: the runtime config and the raw module as two layers.
pub fn wasm_image(wasm: &[u8]) -> anyhow::Result<Image> {
    let config = serde_json::to_vec(&runtime_config())?;
    let config_desc = Descriptor::of(media::WASM_CONFIG, &config);
    Image::from_parts(
        Variant::Oci,
        (config_desc.clone(), config.clone()),
        vec![
            (config_desc.annotated(TITLE, "runtime-config.json"), config),
            (
                Descriptor::of(media::WASM_LAYER, wasm).annotated(TITLE, PLUGIN_FILE),
                wasm.to_vec(),
            ),
        ],
        json!({}),
    )
}

/// A ustar archive holding only `plugin.wasm` (mode 0644, owner 0, time 0).
fn plugin_tar(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, PLUGIN_FILE, wasm)?;
    Ok(builder.into_inner()?)
}

/// Gzip with a fixed level and no name or time in the header.
fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

/// One tag written to a layout.
#[derive(Debug, Clone, Serialize)]
pub struct Tagged {
    pub tag: String,
    pub variant: Variant,
    pub digest: String,
}

/// What [`package`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Packaged {
    pub layout: PathBuf,
    pub wasm: PathBuf,
    pub wasm_size: u64,
    /// SHA-256 of the module itself (an HTTP `code` source's `sha256`).
    pub wasm_sha256: String,
    pub tags: Vec<Tagged>,
}

/// Writes `images` (tag, image) as an OCI image layout in `dir`. A `dir`
/// that already holds a layout is replaced; any other non-empty `dir` is
/// left alone and refused.
pub fn write_layout(dir: &Path, images: &[(String, Image)]) -> anyhow::Result<Vec<Tagged>> {
    if dir.join("oci-layout").is_file() {
        std::fs::remove_dir_all(dir).with_context(|| format!("replacing {}", dir.display()))?;
    } else if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} is not empty and holds no OCI layout: choose another --out",
            dir.display()
        );
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let write_blob = |bytes: &[u8]| -> anyhow::Result<()> {
        let name = digest(bytes);
        let hex = name.trim_start_matches("sha256:");
        std::fs::write(blobs.join(hex), bytes).with_context(|| format!("writing blob {name}"))
    };
    let mut manifests = Vec::new();
    let mut tagged = Vec::new();
    for (tag, image) in images {
        for blob in &image.blobs {
            write_blob(blob)?;
        }
        write_blob(&image.manifest)?;
        let desc = image.descriptor();
        tagged.push(Tagged {
            tag: tag.clone(),
            variant: image.variant,
            digest: desc.digest.clone(),
        });
        manifests.push(desc.annotated(REF_NAME, tag));
    }
    let index = json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": manifests});
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&index)?)?;
    std::fs::write(
        dir.join("oci-layout"),
        serde_json::to_vec(&json!({"imageLayoutVersion": "1.0.0"}))?,
    )?;
    Ok(tagged)
}

/// Packages `wasm` into the layout `out`: the compat variant as `tag`, the
/// oci variant as `tag` + [`WASM_TAG_SUFFIX`].
pub fn package(wasm: &Path, out: &Path, tag: &str) -> anyhow::Result<Packaged> {
    check_tag(tag)?;
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    if !bytes.starts_with(b"\0asm") {
        bail!(
            "{} is not a WebAssembly module (no \\0asm header)",
            wasm.display()
        );
    }
    let images = [
        (tag.to_string(), compat_image(&bytes)?),
        (format!("{tag}{WASM_TAG_SUFFIX}"), wasm_image(&bytes)?),
    ];
    let tags = write_layout(out, &images)?;
    Ok(Packaged {
        layout: out.to_path_buf(),
        wasm: wasm.to_path_buf(),
        wasm_size: bytes.len() as u64,
        wasm_sha256: mcpgw_token::hex::encode(&Sha256::digest(&bytes)),
        tags,
    })
}

/// OCI tags: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (the suffix must still fit).
fn check_tag(tag: &str) -> anyhow::Result<()> {
    let ok = tag.len() + WASM_TAG_SUFFIX.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        && tag
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if !ok {
        bail!(
            "tag {tag:?} is not an OCI tag: letters, digits, '_', '.', '-', starting with a \
             letter, digit or '_', at most {} characters",
            128 - WASM_TAG_SUFFIX.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    // A minimal valid module: magic and version.
    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn manifest(image: &Image) -> Value {
        serde_json::from_slice(&image.manifest).unwrap()
    }

    /// The blob a descriptor names, checked against its digest and size.
    fn blob<'a>(image: &'a Image, desc: &Value) -> &'a [u8] {
        let d = desc["digest"].as_str().unwrap();
        let b = image.blobs.iter().find(|b| digest(b) == d).unwrap();
        assert_eq!(desc["size"].as_u64(), Some(b.len() as u64));
        b
    }

    #[test]
    fn digests_are_sha256_in_oci_form() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn compat_image_holds_plugin_wasm_in_one_tar_gzip_layer() {
        let image = compat_image(MODULE).unwrap();
        let m = manifest(&image);
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], media::MANIFEST);
        assert_eq!(m["annotations"][VARIANT_ANNOTATION], "compat");
        assert_eq!(m["config"]["mediaType"], media::IMAGE_CONFIG);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], media::LAYER_TAR_GZIP);

        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob(&image, &layers[0]))
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some(PLUGIN_FILE));
        assert_eq!(entry.header().mode().unwrap(), 0o644);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, MODULE);
        drop(entry);
        assert!(entries.next().is_none(), "one file only");

        let config: Value = serde_json::from_slice(blob(&image, &m["config"])).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip1");
        // diff_ids name the uncompressed layer.
        assert_eq!(config["rootfs"]["diff_ids"], json!([digest(&tar)]));
    }

    #[test]
    fn oci_image_has_the_runtime_config_and_the_raw_module() {
        let image = wasm_image(MODULE).unwrap();
        let m = manifest(&image);
        assert_eq!(m["mediaType"], media::MANIFEST);
        assert_eq!(m["config"]["mediaType"], media::WASM_CONFIG);
        assert!(m.get("annotations").is_none());
        let layers = m["layers"].as_array().unwrap();
        // Istio and Envoy Gateway take this variant only with exactly two layers.
        assert_eq!(layers.len(), 2);
        let types: Vec<&str> = layers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(types, [media::WASM_CONFIG, media::WASM_LAYER]);
        assert_eq!(blob(&image, &layers[1]), MODULE);
        assert_eq!(
            layers[1]["digest"],
            "sha256:93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476"
        );
        let config: Value = serde_json::from_slice(blob(&image, &layers[0])).unwrap();
        assert_eq!(config, runtime_config());
        assert_eq!(config["config"]["root_ids"], json!([ROOT_ID]));
        assert_eq!(m["config"]["digest"], layers[0]["digest"]);
    }

    #[test]
    fn images_are_reproducible_and_differ_by_content() {
        for make in [compat_image, wasm_image] {
            let a = make(MODULE).unwrap();
            let b = make(MODULE).unwrap();
            assert_eq!(a.manifest, b.manifest);
            assert_eq!(a.blobs, b.blobs);
            let c = make(b"\0asm\x01\0\0\0\0").unwrap();
            assert_ne!(a.descriptor().digest, c.descriptor().digest);
        }
    }

    #[test]
    fn layout_has_every_blob_under_its_digest_and_tags_in_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("filter.wasm");
        std::fs::write(&wasm, MODULE).unwrap();
        let out = dir.path().join("layout");
        let p = package(&wasm, &out, "1.2.3").unwrap();
        assert_eq!(p.wasm_size, MODULE.len() as u64);
        assert_eq!(format!("sha256:{}", p.wasm_sha256), digest(MODULE));

        let layout: Value =
            serde_json::from_slice(&std::fs::read(out.join("oci-layout")).unwrap()).unwrap();
        assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
        let index: Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["mediaType"], media::INDEX);
        let manifests = index["manifests"].as_array().unwrap();
        let tags: Vec<&str> = manifests
            .iter()
            .map(|m| m["annotations"][REF_NAME].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["1.2.3", "1.2.3-wasm"]);
        for (m, t) in manifests.iter().zip(&p.tags) {
            assert_eq!(m["mediaType"], media::MANIFEST);
            assert_eq!(m["digest"].as_str(), Some(t.digest.as_str()));
        }

        // Every file in blobs/sha256 is named by its own digest.
        let mut names = 0;
        for e in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            assert_eq!(
                digest(&bytes),
                format!("sha256:{}", e.file_name().to_str().unwrap())
            );
            names += 1;
        }
        // compat: manifest, config, layer; oci: manifest, config (= its first layer), module.
        assert_eq!(names, 6);

        // Packaging again replaces the layout in place.
        package(&wasm, &out, "2.0.0").unwrap();
        let index: Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(index["manifests"][0]["annotations"][REF_NAME], "2.0.0");
    }

    #[test]
    fn refuses_what_is_not_a_module_a_bad_tag_or_a_foreign_directory() {
        let dir = tempfile::tempdir().unwrap();
        let not_wasm = dir.path().join("x.wasm");
        std::fs::write(&not_wasm, b"#!/bin/sh").unwrap();
        let err = package(&not_wasm, &dir.path().join("o"), "1").unwrap_err();
        assert!(
            err.to_string().contains("not a WebAssembly module"),
            "{err}"
        );

        let wasm = dir.path().join("f.wasm");
        std::fs::write(&wasm, MODULE).unwrap();
        for bad in ["", "-x", "a b", "a/b", "a:b", &"x".repeat(124)] {
            let err = package(&wasm, &dir.path().join("o"), bad).unwrap_err();
            assert!(err.to_string().contains("not an OCI tag"), "{bad:?}: {err}");
        }

        let foreign = dir.path().join("mine");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("keep.txt"), b"x").unwrap();
        let err = package(&wasm, &foreign, "1").unwrap_err();
        assert!(err.to_string().contains("holds no OCI layout"), "{err}");
        assert!(foreign.join("keep.txt").is_file());
    }
}
