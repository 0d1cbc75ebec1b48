//! How to reach a registry the way podman and skopeo do: the login from the
//! same auth files (`podman login`, `docker login`), and a private CA from
//! `/etc/containers/certs.d/HOST[:PORT]/*.crt` (or Docker's `certs.d`).

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sigstore::registry::{Auth, Certificate, CertificateEncoding, ClientConfig};

use crate::Failure;

const CERT_DIRS: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// The auth files podman reads, in its order (containers-auth.json(5)),
/// then Docker's.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        files.push(home.join(".config/containers/auth.json"));
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => files.push(Path::new(&dir).join("config.json")),
        None => {
            if let Some(home) = &home {
                files.push(home.join(".docker/config.json"));
            }
        }
    }
    files
}

/// `https://index.docker.io/v1/` and `docker.io` name the same registry.
fn normalise(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.split('/').next().unwrap_or(key);
    match key {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// The login stored for `host` (`HOST[:PORT]`), or anonymous access. Only
/// the `auth` field (base64 `user:password`) is read; logins kept by a
/// credential helper are not.
pub fn auth_for(host: &str) -> Result<Auth, Failure> {
    let wanted = normalise(host);
    for file in auth_files() {
        let Ok(text) = fs::read(&file) else { continue };
        let document: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            Failure::new(format!(
                "cannot read the registry logins in {}: {e}",
                file.display()
            ))
        })?;
        let Some(auths) = document.get("auths").and_then(|a| a.as_object()) else {
            continue;
        };
        for (key, entry) in auths {
            if normalise(key) != wanted {
                continue;
            }
            let Some(encoded) = entry.get("auth").and_then(|a| a.as_str()) else {
                continue;
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    Failure::new(format!(
                        "the login for {host} in {} is not base64",
                        file.display()
                    ))
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                Failure::new(format!(
                    "the login for {host} in {} has no ':'",
                    file.display()
                ))
            })?;
            return Ok(Auth::Basic(user.to_string(), password.to_string()));
        }
    }
    Ok(Auth::Anonymous)
}

/// HTTPS, trusting the system's CAs and any CA podman or Docker trust for
/// this registry.
pub fn client_config(host: &str) -> Result<ClientConfig, Failure> {
    let mut config = ClientConfig::default();
    for base in CERT_DIRS {
        let dir = Path::new(base).join(host);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
        {
            let data = fs::read(&path)
                .map_err(|e| Failure::new(format!("cannot read the CA {}: {e}", path.display())))?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn auth_keys_name_the_registry() {
        assert_eq!(normalise("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(
            normalise("https://registry.example.com"),
            "registry.example.com"
        );
    }
}
