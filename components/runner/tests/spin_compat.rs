//! The components run under Spin as they are: they import only WASI 0.2
//! interfaces Spin provides and export `wasi:http/incoming-handler`, and
//! `spin.toml` routes to the files its build produces (the `spin-variables`
//! build, which adds Spin's variables interface and nothing else).

mod common;

use std::path::{Path, PathBuf};

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

/// Where `spin build` (spin.toml) writes a component: the `spin` profile.
fn spin_build(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/spin")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --locked --profile spin --target \
         wasm32-wasip2 -p creator -p verifier --features \
         creator/spin-variables,verifier/spin-variables` (scripts/test.sh does this)",
        path.display()
    );
    path
}

fn interfaces(wasm: &Path) -> (Vec<String>, Vec<String>) {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    let bytes = std::fs::read(wasm).unwrap();
    let component = Component::new(&engine, bytes).unwrap();
    let ty = component.component_type();
    let imports = ty.imports(&engine).map(|(n, _)| n.to_owned()).collect();
    let exports = ty.exports(&engine).map(|(n, _)| n.to_owned()).collect();
    (imports, exports)
}

/// `component` imports only WASI 0.2 interfaces Spin provides (and the
/// `extra` imports named exactly), no outgoing HTTP, and exports the
/// `wasi:http` handler.
fn assert_runs_under_spin(component: &str, wasm: &Path, extra: &[&str]) {
    let (imports, exports) = interfaces(wasm);
    assert!(!imports.is_empty());
    for import in imports.iter().filter(|i| !extra.contains(&i.as_str())) {
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

#[test]
fn components_import_only_what_spin_provides() {
    for component in ["creator", "verifier"] {
        assert_runs_under_spin(component, &common::wasm(component), &[]);
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
    assert_eq!(
        routes,
        [
            ("/create", "creator"),
            ("/verifier", "verifier"),
            ("/.well-known/jwks.json", "creator")
        ]
    );

    for name in ["creator", "verifier"] {
        let component = &manifest["component"][name];
        let source = component["source"].as_str().unwrap();
        assert_eq!(source, format!("target/wasm32-wasip2/spin/{name}.wasm"));
        // The build writes exactly the file the manifest serves.
        assert_eq!(
            root.join(source).canonicalize().unwrap(),
            spin_build(name).canonicalize().unwrap()
        );
        let build = component["build"]["command"].as_str().unwrap();
        assert!(build.contains("--target wasm32-wasip2") && build.contains(&format!("-p {name}")));
        assert!(build.contains("--profile spin") && build.contains("--features spin-variables"));
        let files = component["files"].as_array().unwrap();
        assert_eq!(files[0]["destination"].as_str(), Some("/usr/share/key"));
        // Every token setting is a variable of the application, and each
        // component's variable is that application variable.
        let variables = component["variables"].as_table().unwrap();
        for (name, value) in variables {
            assert!(manifest["variables"].get(name).is_some(), "{name}");
            assert_eq!(value.as_str(), Some(format!("{{{{ {name} }}}}").as_str()));
        }
    }
    let settings: Vec<String> = token_contract::api::TOKEN_SETTINGS
        .iter()
        .map(|name| name.to_ascii_lowercase())
        .collect();
    let mut application: Vec<&String> = manifest["variables"].as_table().unwrap().keys().collect();
    application.sort();
    let mut expected: Vec<&String> = settings.iter().collect();
    expected.sort();
    assert_eq!(application, expected);
    // The verifier has its own key directory: under EdDSA and ES256, public
    // keys only.
    let key_dir = |name: &str| {
        manifest["component"][name]["files"][0]["source"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(key_dir("creator"), key_dir("verifier"));
}

/// The Spin build adds the variables interface (spin.toml's settings) and
/// nothing else; it still exports the HTTP handler.
#[test]
fn spin_build_imports_only_wasi_and_spin_variables() {
    const VARIABLES: &str = "fermyon:spin/variables@2.0.0";
    for component in ["creator", "verifier"] {
        let wasm = spin_build(component);
        assert!(interfaces(&wasm).0.contains(&VARIABLES.to_owned()));
        assert_runs_under_spin(component, &wasm, &[VARIABLES]);
    }
}
