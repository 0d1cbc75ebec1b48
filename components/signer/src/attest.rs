//! Attestations (provenance): an in-toto statement about the pushed
//! manifests, signed with the same cosign key as a DSSE envelope and stored
//! where cosign stores attestations, `REPO:sha256-<digest>.att` (one layer
//! of media type `application/vnd.dsse.envelope.v1+json` with a
//! `predicateType` annotation), so `cosign verify-attestation --key` reads
//! it too. The sigstore crate verifies such envelopes inside Sigstore
//! bundles but offers no way to make or push one with a key, so the
//! envelope is built here, from the DSSE protocol (its pre-authentication
//! encoding) and the in-toto statement format; the signing and the
//! signature checks are the sigstore crate's.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oci_client::Reference;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use serde_json::{Value, json};
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature};

use crate::Failure;
use crate::sign::{Session, parse, pinned};

pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// DSSE's pre-authentication encoding: what the signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn attestation_tag(digest: &str) -> String {
    format!("{}.att", digest.replace(':', "-"))
}

/// `attest`: one statement whose subjects are the image (an index and,
/// with `recursive`, its platform manifests), attached to each of them.
pub async fn attest(
    signer: &SigStoreSigner,
    predicate_path: &Path,
    predicate_type: &str,
    text: &str,
    recursive: bool,
) -> Result<(), Failure> {
    let predicate: Value = std::fs::read(predicate_path)
        .map_err(|e| {
            format!(
                "cannot read the predicate {}: {e}",
                predicate_path.display()
            )
        })
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "the predicate {} is not JSON: {e}",
                    predicate_path.display()
                )
            })
        })
        .map_err(Failure::new)?;
    let reference = parse(text)?;
    let mut session = Session::open(reference.registry())?;
    let (digest, _) = session.locate(&reference).await?;
    let mut digests = vec![digest.clone()];
    if recursive {
        digests.extend(
            session
                .children(&pinned(&reference, &digest))
                .await?
                .into_iter()
                .map(|(d, _)| d),
        );
    }
    let name = format!("{}/{}", reference.registry(), reference.repository());
    let subjects: Vec<Value> = digests
        .iter()
        .map(|d| {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            json!({"name": name, "digest": {"sha256": hex}})
        })
        .collect();
    let statement = json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let payload = serde_json::to_vec(&statement)
        .map_err(|e| Failure::new(format!("cannot encode the statement: {e}")))?;
    let signature = signer
        .sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload))
        .map_err(|e| Failure::new(format!("cannot sign the statement: {e}")))?;
    let envelope = json!({
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": BASE64.encode(&payload),
        "signatures": [{"keyid": "", "sig": BASE64.encode(&signature)}],
    });
    let envelope = serde_json::to_vec(&envelope)
        .map_err(|e| Failure::new(format!("cannot encode the envelope: {e}")))?;
    for digest in &digests {
        let target = Reference::with_tag(
            reference.registry().to_string(),
            reference.repository().to_string(),
            attestation_tag(digest),
        );
        let annotations =
            BTreeMap::from([("predicateType".to_string(), predicate_type.to_string())]);
        let layers = [ImageLayer::new(
            envelope.clone(),
            DSSE_MEDIA_TYPE.to_string(),
            Some(annotations),
        )];
        let config = Config::oci_v1(b"{}".to_vec(), None);
        let mut manifest = OciImageManifest::build(&layers, &config, None);
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
        session
            .oci
            .push(&target, &layers, config, &session.oci_auth, Some(manifest))
            .await
            .map_err(|e| {
                Failure::new(format!(
                    "cannot push the attestation to {}: {e}",
                    target.whole()
                ))
            })?;
        eprintln!(
            "[image-signer] attested {name}@{digest}: {}",
            target.whole()
        );
    }
    Ok(())
}

/// `verify-attestation`: the statement attached to the image, once its
/// envelope's signature verifies with the public key, its subjects name the
/// image's digest and its predicate type is the one asked for; printed as
/// JSON on stdout.
pub async fn verify(
    public_key: &[u8],
    key_path: &Path,
    predicate_type: &str,
    text: &str,
) -> Result<(), Failure> {
    let key = CosignVerificationKey::try_from_pem(public_key).map_err(|e| {
        Failure::new(format!(
            "{} is not a usable public key: {e}",
            key_path.display()
        ))
    })?;
    let reference = parse(text)?;
    let mut session = Session::open(reference.registry())?;
    let (digest, _) = session.locate(&reference).await?;
    let image = pinned(&reference, &digest);
    let target = Reference::with_tag(
        reference.registry().to_string(),
        reference.repository().to_string(),
        attestation_tag(&digest),
    );
    let data = session
        .oci
        .pull(&target, &session.oci_auth, vec![DSSE_MEDIA_TYPE])
        .await
        .map_err(|e| {
            Failure::new(format!(
                "{} has no attestation: nothing at {} ({e})",
                image.whole(),
                target.whole()
            ))
        })?;
    let mut reasons = Vec::new();
    for layer in &data.layers {
        match check_envelope(&key, &layer.data, &digest, predicate_type) {
            Ok(statement) => {
                let text = serde_json::to_string_pretty(&statement)
                    .map_err(|e| Failure::new(format!("cannot print the statement: {e}")))?;
                println!("{text}");
                eprintln!("[image-signer] attestation of {} verified", image.whole());
                return Ok(());
            }
            Err(reason) => reasons.push(reason),
        }
    }
    Err(Failure::new(format!(
        "{}: no attestation at {} verifies with {}: {}",
        image.whole(),
        target.whole(),
        key_path.display(),
        if reasons.is_empty() {
            "it holds no envelope".to_string()
        } else {
            reasons.join("; ")
        }
    )))
}

fn check_envelope(
    key: &CosignVerificationKey,
    data: &[u8],
    digest: &str,
    predicate_type: &str,
) -> Result<Value, String> {
    let envelope: Value =
        serde_json::from_slice(data).map_err(|e| format!("not a DSSE envelope ({e})"))?;
    let payload_type = envelope["payloadType"]
        .as_str()
        .ok_or("the envelope has no payloadType")?;
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "payload type {payload_type}, not {IN_TOTO_PAYLOAD_TYPE}"
        ));
    }
    let payload = envelope["payload"]
        .as_str()
        .and_then(|p| BASE64.decode(p).ok())
        .ok_or("the envelope's payload is not base64")?;
    let message = pae(payload_type, &payload);
    let signed = envelope["signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            s["sig"].as_str().is_some_and(|sig| {
                key.verify_signature(Signature::Base64Encoded(sig.as_bytes()), &message)
                    .is_ok()
            })
        });
    if !signed {
        return Err(
            "its signature does not verify (another key, or changed after signing)".to_string(),
        );
    }
    let statement: Value =
        serde_json::from_slice(&payload).map_err(|e| format!("the statement is not JSON ({e})"))?;
    if statement["_type"] != IN_TOTO_STATEMENT_V1 {
        return Err(format!(
            "not an in-toto statement v1: {}",
            statement["_type"]
        ));
    }
    if statement["predicateType"] != predicate_type {
        return Err(format!(
            "predicate type {}, not {predicate_type}",
            statement["predicateType"]
        ));
    }
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let names_image = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["digest"]["sha256"].as_str() == Some(hex));
    if !names_image {
        return Err(format!(
            "its subjects do not name {digest} (made for another image)"
        ));
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_dsse_encoding() {
        // The example of the DSSE protocol's specification.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn envelope_round_trip_and_refusals() {
        let signer = sigstore::crypto::SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap();
        let key = signer.to_verification_key().unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let statement = json!({"_type": IN_TOTO_STATEMENT_V1, "predicateType": SLSA_PROVENANCE_V1,
            "subject": [{"name": "r/x", "digest": {"sha256": "a".repeat(64)}}], "predicate": {}});
        let envelope = |statement: &Value, signer: &SigStoreSigner| {
            let payload = serde_json::to_vec(statement).unwrap();
            let sig = signer.sign(&pae(IN_TOTO_PAYLOAD_TYPE, &payload)).unwrap();
            serde_json::to_vec(
                &json!({"payloadType": IN_TOTO_PAYLOAD_TYPE, "payload": BASE64.encode(&payload),
                "signatures": [{"keyid": "", "sig": BASE64.encode(sig)}]}),
            )
            .unwrap()
        };
        assert!(
            check_envelope(
                &key,
                &envelope(&statement, &signer),
                &digest,
                SLSA_PROVENANCE_V1
            )
            .is_ok()
        );
        let other = sigstore::crypto::SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap();
        assert!(
            check_envelope(
                &key,
                &envelope(&statement, &other),
                &digest,
                SLSA_PROVENANCE_V1
            )
            .is_err()
        );
        let elsewhere = format!("sha256:{}", "b".repeat(64));
        assert!(
            check_envelope(
                &key,
                &envelope(&statement, &signer),
                &elsewhere,
                SLSA_PROVENANCE_V1
            )
            .is_err()
        );
        assert!(
            check_envelope(
                &key,
                &envelope(&statement, &signer),
                &digest,
                "https://example.com/other"
            )
            .is_err()
        );
    }
}
