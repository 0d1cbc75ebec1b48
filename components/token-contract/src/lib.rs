//! The token service's wire contract, shared by every program that speaks it.
//!
//! The creator and verifier components (Wasm, via `spin-sdk`) and the native
//! benchmark server all route requests through [`handle`], so the contract
//! (paths, methods, status codes, JSON error bodies, token format) is written
//! once and tested once, independently of the HTTP stack that carries it.

pub mod alg;
pub mod api;
pub mod jwk;
pub mod key;
#[cfg(feature = "spin")]
pub mod spin;
pub mod token;

pub use alg::Algorithm;
pub use api::{Config, Endpoint, Request, Response, handle};
pub use jwk::{PrivateKey, PublicKey, PublicKeySet};
pub use key::{KeyError, KeyFiles, Keys, SigningKey};
pub use token::{TokenError, issue, verify, verify_with_keys};
