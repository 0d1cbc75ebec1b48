//! Cosign key pairs: the passphrase, reading the encrypted private key
//! (`cosign generate-key-pair`'s format, which the sigstore crate reads and
//! writes: scrypt + NaCl secretbox in an `ENCRYPTED SIGSTORE PRIVATE KEY`
//! or `ENCRYPTED COSIGN PRIVATE KEY` PEM), and making a new pair.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{SigStoreSigner, SigningScheme};
use zeroize::Zeroizing;

use crate::Failure;

/// The environment variable cosign reads the passphrase from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// The passphrase: the first line of `--password-file`, else
/// `COSIGN_PASSWORD` (which may be set and empty, as with cosign, for a key
/// encrypted with an empty passphrase). Never a command-line argument.
pub fn passphrase(password_file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, Failure> {
    if let Some(path) = password_file {
        let text = Zeroizing::new(fs::read(path).map_err(|e| {
            Failure::new(format!(
                "cannot read the password file {}: {e}",
                path.display()
            ))
        })?);
        let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return Ok(Zeroizing::new(line.to_vec()));
    }
    match std::env::var_os(PASSWORD_ENV) {
        Some(value) => Ok(Zeroizing::new(value.into_encoded_bytes())),
        None => Err(Failure::new(format!(
            "no passphrase for the key: set {PASSWORD_ENV} or give --password-file FILE"
        ))),
    }
}

/// The signer of a cosign private key file (ECDSA P-256, SHA-256).
pub fn load_signer(path: &Path, password: &[u8]) -> Result<SigStoreSigner, Failure> {
    let pem = Zeroizing::new(fs::read(path).map_err(|e| {
        Failure::new(format!(
            "cannot read the private key {}: {e}",
            path.display()
        ))
    })?);
    let encrypted = pem.starts_with(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
        || pem.starts_with(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----");
    let pair = SigStoreKeyPair::from_encrypted_pem(&pem, password).map_err(|e| {
        Failure::new(if encrypted {
            format!(
                "cannot decrypt the private key {}: wrong passphrase",
                path.display()
            )
        } else {
            format!("{} is not a cosign private key: {e}", path.display())
        })
    })?;
    if !matches!(pair, SigStoreKeyPair::ECDSA(_)) {
        return Err(Failure::new(format!(
            "{} is not an ECDSA P-256 key (what `cosign generate-key-pair` makes)",
            path.display()
        )));
    }
    pair.to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
        .map_err(|e| Failure::new(format!("{} is not an ECDSA P-256 key: {e}", path.display())))
}

/// The public key of a signer, in PEM (as `cosign public-key` prints it).
pub fn public_key_pem(signer: &SigStoreSigner) -> Result<String, Failure> {
    signer
        .to_sigstore_keypair()
        .and_then(|pair| pair.public_key_to_pem())
        .map(|pem| if pem.ends_with('\n') { pem } else { pem + "\n" })
        .map_err(|e| Failure::new(format!("cannot export the public key: {e}")))
}

/// The public key file: read and checked to be a public key.
pub fn load_public_key(path: &Path) -> Result<Vec<u8>, Failure> {
    let pem = fs::read(path).map_err(|e| {
        Failure::new(format!(
            "cannot read the public key {}: {e}",
            path.display()
        ))
    })?;
    sigstore::crypto::CosignVerificationKey::try_from_pem(&pem).map_err(|e| {
        Failure::new(format!(
            "{} is not a public key in PEM: {e}",
            path.display()
        ))
    })?;
    Ok(pem)
}

/// `generate-key-pair`: PREFIX.key (encrypted with the passphrase, mode
/// 0600) and PREFIX.pub, as `cosign generate-key-pair` writes them; refuses
/// to replace existing files.
pub fn generate(prefix: &str, password: &[u8]) -> Result<(PathBuf, PathBuf), Failure> {
    let private_path = PathBuf::from(format!("{prefix}.key"));
    let public_path = PathBuf::from(format!("{prefix}.pub"));
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(Failure::new(format!(
                "{} exists already; not replacing it",
                path.display()
            )));
        }
    }
    let failed =
        |e: sigstore::errors::SigstoreError| Failure::new(format!("cannot make the key pair: {e}"));
    let pair = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .and_then(|signer| signer.to_sigstore_keypair())
        .map_err(failed)?;
    let private_pem = pair
        .private_key_to_encrypted_pem(password)
        .map_err(failed)?;
    let mut public_pem = pair.public_key_to_pem().map_err(failed)?;
    if !public_pem.ends_with('\n') {
        public_pem.push('\n');
    }
    write_new(&private_path, private_pem.as_bytes(), 0o600)?;
    write_new(&public_path, public_pem.as_bytes(), 0o644)?;
    Ok((private_path, public_path))
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), Failure> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::new(format!("cannot write {}: {e}", path.display())))
}
