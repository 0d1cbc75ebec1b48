//! The components run under Spin as they are: they import only WASI 0.2
//! interfaces Spin provides and export `wasi:http/incoming-handler`, and
//! `spin.toml` routes to the files the build produces.

mod common;

use std::path::Path;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// WASI 0.2 packages every Spin 3 host provides to HTTP components.
const SPIN_PROVIDES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:http",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
];

fn interfaces(component: &str) -> (Vec<String>, Vec<String>) {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let bytes = std::fs::read(common::wasm(component)).unwrap();
    let component = Component::new(&engine, bytes).unwrap();
    let ty = component.component_type();
    let imports = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
    let exports = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
    (imports, exports)
}

#[test]
fn components_import_only_what_spin_provides() {
    for component in ["creator", "verifier"] {
        let (imports, exports) = interfaces(component);
        assert!(!imports.is_empty());
        for import in &imports {
            let (interface, version) = import
                .split_once('@')
                .unwrap_or_else(|| panic!("{component}: unversioned import {import}"));
            let package = interface.split('/').next().unwrap();
            assert!(
                SPIN_PROVIDES.contains(&package) && version.starts_with("0.2."),
                "{component} imports {import}, which Spin does not provide"
            );
        }
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")),
            "{component} exports {exports:?}"
        );
        // Outgoing HTTP is neither needed nor imported.
        assert!(!imports.iter().any(|i| i.contains("outgoing-handler")));
    }
}

#[test]
fn spin_manifest_routes_each_path_to_its_built_component() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("spin.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(manifest["spin_manifest_version"].as_integer(), Some(2));

    let triggers = manifest["trigger"]["http"].as_array().unwrap();
    let routes: Vec<(&str, &str)> = triggers
        .iter()
        .map(|t| {
            (
                t["route"].as_str().unwrap(),
                t["component"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(routes, [("/create", "creator"), ("/verifier", "verifier")]);

    for name in ["creator", "verifier"] {
        let component = &manifest["component"][name];
        let source = component["source"].as_str().unwrap();
        assert_eq!(source, format!("target/wasm32-wasip2/release/{name}.wasm"));
        // The build writes exactly the file the manifest serves.
        assert_eq!(
            root.join(source).canonicalize().unwrap(),
            common::wasm(name).canonicalize().unwrap()
        );
        let build = component["build"]["command"].as_str().unwrap();
        assert!(build.contains("--target wasm32-wasip2") && build.contains(&format!("-p {name}")));
        let files = component["files"].as_array().unwrap();
        assert_eq!(files[0]["destination"].as_str(), Some("/usr/share/key"));
    }
}
