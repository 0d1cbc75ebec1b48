//! Which algorithm signs a deployment's tokens: one setting, `TOKEN_ALG`,
//! read by keycreator, the creator and the verifier alike.
//!
//! - `HS256` (the default): HMAC with the secret-derived key file, as the
//!   reference system; whoever verifies can also sign.
//! - `EdDSA` (Ed25519, RFC 8037) and `ES256` (ECDSA P-256, RFC 7518): the
//!   creator signs with a private key derived from the same secret, and
//!   publishes the public keys as a JWK Set; verifiers need nothing secret.
//!
//! A verifier accepts exactly its deployment's algorithm (RFC 8725, 3.1): the
//! `alg` header of a token only has to agree with it, never chooses it.

use std::fmt;
use std::str::FromStr;

/// The environment variable every program reads.
pub const TOKEN_ALG_ENV: &str = "TOKEN_ALG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// HMAC-SHA-256 with the key file's 128 characters (reference-compatible).
    #[default]
    Hs256,
    /// Ed25519 signatures (RFC 8037), `"alg": "EdDSA"`.
    EdDsa,
    /// ECDSA on P-256 with SHA-256 (RFC 7518, 3.4), `"alg": "ES256"`.
    Es256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Hs256, Algorithm::EdDsa, Algorithm::Es256];

    /// The JOSE name, as in a token's `alg` header and in `TOKEN_ALG`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }

    /// Whether tokens are signed with a private key whose public half is
    /// published (a JWK Set), rather than with a shared secret.
    pub fn is_asymmetric(self) -> bool {
        self != Algorithm::Hs256
    }

    /// Reads `TOKEN_ALG` through `lookup`: unset or empty means HS256.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, UnknownAlgorithm> {
        match lookup(TOKEN_ALG_ENV) {
            Some(value) if !value.is_empty() => value.parse(),
            _ => Ok(Algorithm::Hs256),
        }
    }
}

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// JOSE algorithm names are case-sensitive (RFC 7515, 4.1.1): `EdDSA`,
    /// not `eddsa`. A near miss is refused with the right spelling.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|alg| alg.name() == value)
            .ok_or_else(|| UnknownAlgorithm(value.to_owned()))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `TOKEN_ALG` names no algorithm we sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownAlgorithm(pub String);

impl fmt::Display for UnknownAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_ALG_ENV} must be HS256, EdDSA or ES256 (case-sensitive), got {:?}",
            self.0
        )
    }
}

impl std::error::Error for UnknownAlgorithm {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unset_is_hs256() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.name().parse::<Algorithm>().unwrap(), alg);
        }
        assert_eq!(Algorithm::from_lookup(|_| None).unwrap(), Algorithm::Hs256);
        assert_eq!(
            Algorithm::from_lookup(|_| Some(String::new())).unwrap(),
            Algorithm::Hs256
        );
        assert!(!Algorithm::Hs256.is_asymmetric());
        assert!(Algorithm::EdDsa.is_asymmetric() && Algorithm::Es256.is_asymmetric());
    }

    #[test]
    fn unknown_names_are_refused_naming_the_choices() {
        for bad in [
            "eddsa", "es256", "RS256", "none", "HS512", " HS256", "Ed25519",
        ] {
            let error = bad.parse::<Algorithm>().unwrap_err().to_string();
            assert!(
                error.contains("TOKEN_ALG must be HS256, EdDSA or ES256"),
                "{error}"
            );
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }
}
