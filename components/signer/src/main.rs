//! image-signer: cosign signatures for container images in a registry,
//! without cosign. Signs and verifies with the sigstore crate (the Rust
//! implementation of cosign's key-based signing and verification); the
//! signature is cosign's: a simple-signing payload naming the manifest
//! digest, signed with ECDSA P-256 / SHA-256, stored as the one layer of the
//! `sha256-<digest>.sig` manifest next to the image, so `cosign verify
//! --key` and admission controllers read it too.
//!
//!   image-signer generate-key-pair [--output-key-prefix cosign]
//!   image-signer public-key --key cosign.key [--password-file FILE]
//!   image-signer sign --key cosign.key [--password-file FILE] [--recursive] REF...
//!   image-signer verify --key cosign.pub REF...
//!   image-signer attest --key cosign.key --predicate FILE [--type URI] [--recursive] REF
//!   image-signer verify-attestation --key cosign.pub [--type URI] REF
//!
//! Attestations (a build's provenance) are in-toto statements in DSSE
//! envelopes signed with the same key, at `sha256-<digest>.att`, as
//! `cosign attest` stores them.
//!
//! The passphrase comes from `--password-file` or `COSIGN_PASSWORD`, never
//! from an argument. Logins are podman's and Docker's (`podman login`), a
//! private CA goes where podman looks for it
//! (`/etc/containers/certs.d/HOST:PORT/ca.crt`).
//!
//! Exit codes: 0 done, 1 refused or failed (one line on stderr), 2 bad usage.

mod attest;
mod keys;
mod registry;
mod sign;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// One line for the user: what failed, and why.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        // Library errors can carry newlines (registry bodies); one line it is.
        Failure(
            message
                .into()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    }
}

#[derive(Parser)]
#[command(
    name = "image-signer",
    version,
    about = "Sign container images in a registry with a cosign key, and verify them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a cosign key pair: PREFIX.key (encrypted with the passphrase) and PREFIX.pub.
    GenerateKeyPair {
        /// Write PREFIX.key and PREFIX.pub.
        #[arg(long, default_value = "cosign")]
        output_key_prefix: String,
        /// Read the passphrase from the first line of FILE (else COSIGN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Print the public key of a private key (and so check its passphrase).
    PublicKey {
        /// The cosign private key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Read the passphrase from the first line of FILE (else COSIGN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Sign each image (by tag or digest): pushes REPO:sha256-<digest>.sig.
    Sign {
        /// The cosign private key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Read the passphrase from the first line of FILE (else COSIGN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// For an image index, sign each platform manifest it lists too.
        #[arg(long)]
        recursive: bool,
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
    },
    /// Verify each image's signature with the public key; for an image
    /// index, every platform manifest it lists must be signed too.
    Verify {
        /// The cosign public key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
    },
    /// Attach a signed in-toto statement (e.g. SLSA provenance) about the image.
    Attest {
        /// The cosign private key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Read the passphrase from the first line of FILE (else COSIGN_PASSWORD).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// The predicate: a JSON file.
        #[arg(long, value_name = "FILE")]
        predicate: PathBuf,
        /// The predicate type.
        #[arg(long = "type", value_name = "URI", default_value = attest::SLSA_PROVENANCE_V1)]
        predicate_type: String,
        /// For an image index, name its platform manifests too and attach the statement to each.
        #[arg(long)]
        recursive: bool,
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Verify the attestation of an image with the public key and print its statement.
    VerifyAttestation {
        /// The cosign public key.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The predicate type required.
        #[arg(long = "type", value_name = "URI", default_value = attest::SLSA_PROVENANCE_V1)]
        predicate_type: String,
        #[arg(value_name = "REF")]
        reference: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("image-signer: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::GenerateKeyPair {
            output_key_prefix,
            password_file,
        } => {
            let password = keys::passphrase(password_file.as_deref())?;
            let (private, public) = keys::generate(&output_key_prefix, &password)?;
            eprintln!("Private key written to {}", private.display());
            eprintln!("Public key written to {}", public.display());
            Ok(())
        }
        Command::PublicKey { key, password_file } => {
            let password = keys::passphrase(password_file.as_deref())?;
            print!(
                "{}",
                keys::public_key_pem(&keys::load_signer(&key, &password)?)?
            );
            Ok(())
        }
        Command::Sign {
            key,
            password_file,
            recursive,
            references,
        } => {
            let password = keys::passphrase(password_file.as_deref())?;
            let signer = keys::load_signer(&key, &password)?;
            runtime()?.block_on(sign::sign_all(signer, &references, recursive))
        }
        Command::Verify { key, references } => {
            let public_key = keys::load_public_key(&key)?;
            runtime()?.block_on(sign::verify_all(&public_key, &key, &references))
        }
        Command::Attest {
            key,
            password_file,
            predicate,
            predicate_type,
            recursive,
            reference,
        } => {
            let password = keys::passphrase(password_file.as_deref())?;
            let signer = keys::load_signer(&key, &password)?;
            runtime()?.block_on(attest::attest(
                &signer,
                &predicate,
                &predicate_type,
                &reference,
                recursive,
            ))
        }
        Command::VerifyAttestation {
            key,
            predicate_type,
            reference,
        } => {
            let public_key = keys::load_public_key(&key)?;
            runtime()?.block_on(attest::verify(
                &public_key,
                &key,
                &predicate_type,
                &reference,
            ))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))
}
