//! What every fuzz input must satisfy, shared by the targets in
//! `fuzz_targets/`.
//!
//! Each target turns libFuzzer's bytes into an input (raw, or structured with
//! `arbitrary`), runs the real code on it and checks the properties here. A
//! violated property panics, which libFuzzer reports as a finding and saves
//! under `fuzz/artifacts/`.
//!
//! The checks are independent of the code under test where it matters: a
//! token the verifier accepted is checked with a separate HMAC-SHA256 and
//! decoded by a second JWT implementation (the `jsonwebtoken` crate, as
//! PyJWT-compatible as ours: HS256, `exp` required, no leeway). EdDSA and
//! ES256 tokens and JWK Sets are judged on RustCrypto's curves and hash
//! (`jwk`, `published`), by the same `jsonwebtoken` and by RFC 7638
//! thumbprints computed here.

pub mod jwk;
pub mod keys;
pub mod published;
pub mod response;
pub mod token;

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
