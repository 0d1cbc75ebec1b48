//! Token verification on arbitrary bytes, seeded with valid tokens of the
//! seed keys (`fuzz/seeds/verify_token`), so that libFuzzer's mutations
//! start from tokens that verify.
//!
//! Properties: no panic; a refusal is always the client's fault
//! (`TokenError::Invalid` with a reason), since both keys are usable; an
//! acceptance only for a token one of the two keys signed, with an `exp`
//! that has not passed and the username it answers (see
//! `token_service_fuzz::token::check_accepted`); the differential the other
//! way: a token `jsonwebtoken` accepts with a seed key we accept too, unless
//! a documented rule of ours refuses it
//! (`token_service_fuzz::token::check_refused_hs256`). The seed
//! `aud-empty-list` is the token `verify_mutated_token` found in CI, with
//! `"aud": []` (which we refused and PyJWT accepts), re-signed with the seed
//! key and an `exp` in 2100 (the original's key was the fuzz input's own,
//! and its `exp` was an hour after the run).

#![no_main]

use libfuzzer_sys::fuzz_target;
use token_contract::{SigningKey, TokenError, verify_with_keys};
use token_service_fuzz::keys::{SEED_CURRENT_KEY, SEED_PREVIOUS_KEY};
use token_service_fuzz::token::{check_accepted, check_refused_hs256};

fuzz_target!(|data: &[u8]| {
    // Tokens reach the verifier inside a JSON string, so always as Unicode.
    let token = String::from_utf8_lossy(data);
    let current = SigningKey::from_file_contents(SEED_CURRENT_KEY).expect("seed key");
    let previous = SigningKey::from_file_contents(SEED_PREVIOUS_KEY).expect("seed key");
    let accepted: [&[u8]; 2] = [SEED_CURRENT_KEY, SEED_PREVIOUS_KEY];
    match verify_with_keys(&current, || Ok(Some(previous)), &token) {
        Ok(username) => {
            check_accepted(&token, &username, &accepted);
        }
        Err(TokenError::Invalid(why)) => {
            assert!(!why.is_empty());
            check_refused_hs256(&token, &why, &accepted);
        }
        Err(other) => panic!("a server fault for a client's token: {other:?}"),
    }
});
