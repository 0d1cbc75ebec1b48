//! Signing and verifying images in a registry, with the sigstore crate's
//! cosign client: it finds where the signature of a digest lives
//! (`triangulate`: `REPO:sha256-<digest>.sig`), makes and pushes the
//! simple-signing payload and its signature, and on verification keeps only
//! the signature layers whose payload names the image's digest and checks
//! their ECDSA signatures with the public key.

use std::path::Path;

use oci_client::Reference;
use oci_client::manifest::OciManifest;
use oci_client::secrets::RegistryAuth;
use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{
    ClientBuilder, Constraint, CosignCapabilities, SignatureLayer, verify_constraints,
};
use sigstore::crypto::SigStoreSigner;
use sigstore::registry::{Auth, OciReference};

use crate::{Failure, registry};

/// The media type of a cosign signature layer.
const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// One registry, as its user is logged in to it.
pub(crate) struct Session {
    cosign: sigstore::cosign::Client,
    pub(crate) oci: oci_client::Client,
    auth: Auth,
    pub(crate) oci_auth: RegistryAuth,
}

impl Session {
    pub(crate) fn open(host: &str) -> Result<Self, Failure> {
        let config = registry::client_config(host)?;
        let auth = registry::auth_for(host)?;
        let oci_auth = RegistryAuth::from(&auth);
        let oci = oci_client::Client::new(config.clone().into());
        let cosign = ClientBuilder::default()
            .with_oci_client_config(config)
            .build()
            .map_err(|e| {
                Failure::new(format!("cannot set up the registry client for {host}: {e}"))
            })?;
        Ok(Session {
            cosign,
            oci,
            auth,
            oci_auth,
        })
    }

    /// The digest the registry serves for `reference` now, and where its
    /// cosign signature lives.
    pub(crate) async fn locate(
        &mut self,
        reference: &Reference,
    ) -> Result<(String, OciReference), Failure> {
        let image: OciReference = reference.whole().parse().map_err(|e| {
            Failure::new(format!(
                "'{}' is not an image reference: {e}",
                reference.whole()
            ))
        })?;
        let (signature, digest) =
            self.cosign
                .triangulate(&image, &self.auth)
                .await
                .map_err(|e| {
                    Failure::new(format!(
                        "cannot find {} in the registry: {e}",
                        reference.whole()
                    ))
                })?;
        Ok((digest, signature))
    }

    /// The platform manifests an image index lists (empty for an image
    /// manifest), with their platforms.
    pub(crate) async fn children(
        &self,
        pinned: &Reference,
    ) -> Result<Vec<(String, String)>, Failure> {
        let (manifest, _) = self
            .oci
            .pull_manifest(pinned, &self.oci_auth)
            .await
            .map_err(|e| {
                Failure::new(format!(
                    "cannot read the manifest of {}: {e}",
                    pinned.whole()
                ))
            })?;
        Ok(match manifest {
            OciManifest::Image(_) => Vec::new(),
            OciManifest::ImageIndex(index) => index
                .manifests
                .into_iter()
                .map(|entry| {
                    let platform = entry
                        .platform
                        .map(|p| format!("{}/{}", p.os, p.architecture))
                        .unwrap_or_else(|| "no platform".to_string());
                    (entry.digest, platform)
                })
                .collect(),
        })
    }
}

pub(crate) fn parse(text: &str) -> Result<Reference, Failure> {
    text.parse::<Reference>()
        .map_err(|e| Failure::new(format!("'{text}' is not an image reference: {e}")))
}

pub(crate) fn pinned(reference: &Reference, digest: &str) -> Reference {
    Reference::with_digest(
        reference.registry().to_string(),
        reference.repository().to_string(),
        digest.to_string(),
    )
}

// --- sign ---------------------------------------------------------------------------

pub async fn sign_all(
    signer: SigStoreSigner,
    references: &[String],
    recursive: bool,
) -> Result<(), Failure> {
    let signer = PrivateKeySigner::new_with_signer(signer);
    for text in references {
        let reference = parse(text)?;
        let mut session = Session::open(reference.registry())?;
        let (digest, _) = session.locate(&reference).await?;
        let mut targets = vec![(digest.clone(), String::new())];
        if recursive {
            targets.extend(session.children(&pinned(&reference, &digest)).await?);
        }
        for (digest, platform) in targets {
            sign_one(
                &mut session,
                &signer,
                &pinned(&reference, &digest),
                &platform,
            )
            .await?;
        }
    }
    Ok(())
}

/// Signs the manifest `image` (pinned by digest) and pushes the signature,
/// replacing any earlier signature of that digest.
async fn sign_one(
    session: &mut Session,
    signer: &PrivateKeySigner,
    image: &Reference,
    platform: &str,
) -> Result<(), Failure> {
    let (digest, signature_ref) = session.locate(image).await?;
    let cosign_image: OciReference = image
        .whole()
        .parse()
        .map_err(|e| Failure::new(format!("{}: {e}", image.whole())))?;
    let mut layer = SignatureLayer::new_unsigned(&cosign_image, &digest).map_err(|e| {
        Failure::new(format!(
            "cannot make the signature payload of {}: {e}",
            image.whole()
        ))
    })?;
    // As cosign writes it: the repository the image was signed in.
    layer.simple_signing.critical.identity.docker_reference =
        format!("{}/{}", image.registry(), image.repository());
    match signer.add_constraint(&mut layer) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Failure::new(format!(
                "{}: the payload was signed already",
                image.whole()
            )));
        }
        Err(e) => return Err(Failure::new(format!("cannot sign {}: {e}", image.whole()))),
    }
    session
        .cosign
        .push_signature(None, &session.auth, &signature_ref, vec![layer])
        .await
        .map_err(|e| {
            Failure::new(format!(
                "cannot push the signature of {} to {signature_ref}: {e}",
                image.whole()
            ))
        })?;
    let platform = if platform.is_empty() {
        String::new()
    } else {
        format!(" ({platform})")
    };
    eprintln!(
        "[image-signer] signed {}{platform}: {signature_ref}",
        image.whole()
    );
    Ok(())
}

// --- verify -------------------------------------------------------------------------

pub async fn verify_all(
    public_key: &[u8],
    key_path: &Path,
    references: &[String],
) -> Result<(), Failure> {
    let verifier = PublicKeyVerifier::try_from(public_key).map_err(|e| {
        Failure::new(format!(
            "{} is not a usable public key: {e}",
            key_path.display()
        ))
    })?;
    let constraints: VerificationConstraintVec = vec![Box::new(verifier)];
    for text in references {
        let reference = parse(text)?;
        let mut session = Session::open(reference.registry())?;
        let (digest, _) = session.locate(&reference).await?;
        let top = pinned(&reference, &digest);
        let mut targets = vec![(digest.clone(), String::new())];
        targets.extend(session.children(&top).await?);
        for (digest, platform) in targets {
            verify_one(
                &mut session,
                &constraints,
                key_path,
                &pinned(&reference, &digest),
            )
            .await?;
            let platform = if platform.is_empty() {
                String::new()
            } else {
                format!(" ({platform})")
            };
            println!(
                "{}/{}@{digest}{platform}: signature verified",
                reference.registry(),
                reference.repository()
            );
        }
    }
    Ok(())
}

async fn verify_one(
    session: &mut Session,
    constraints: &VerificationConstraintVec,
    key_path: &Path,
    image: &Reference,
) -> Result<(), Failure> {
    let (digest, signature_ref) = session.locate(image).await?;
    let cosign_image: OciReference = image
        .whole()
        .parse()
        .map_err(|e| Failure::new(format!("{}: {e}", image.whole())))?;
    let layers = session
        .cosign
        .trusted_signature_layers(&session.auth, &cosign_image)
        .await
        .map_err(|e| {
            Failure::new(format!(
                "cannot read the signatures of {}: {e}",
                image.whole()
            ))
        })?;
    if layers.is_empty() {
        return Err(explain_missing(session, image, &digest, &signature_ref).await);
    }
    verify_constraints(&layers, constraints.iter()).map_err(|_| {
        Failure::new(format!(
            "{}: no signature at {signature_ref} verifies with {} (signed with another key, or changed after signing)",
            image.whole(),
            key_path.display()
        ))
    })
}

/// Why an image has no signature that names its digest: none at all, or
/// one made for another image (a signature copied next to this one).
async fn explain_missing(
    session: &Session,
    image: &Reference,
    digest: &str,
    signature_ref: &OciReference,
) -> Failure {
    let Ok(signature) = signature_ref.to_string().parse::<Reference>() else {
        return Failure::new(format!("{} is not signed", image.whole()));
    };
    if let Err(e) = session
        .oci
        .pull_manifest(&signature, &session.oci_auth)
        .await
    {
        return Failure::new(format!(
            "{} is not signed: no signature at {signature_ref} ({e})",
            image.whole()
        ));
    }
    let named = session
        .oci
        .pull(
            &signature,
            &session.oci_auth,
            vec![SIMPLE_SIGNING_MEDIA_TYPE],
        )
        .await
        .ok()
        .and_then(|data| {
            data.layers.iter().find_map(|layer| {
                let payload: serde_json::Value = serde_json::from_slice(&layer.data).ok()?;
                Some(
                    payload
                        .pointer("/critical/image/docker-manifest-digest")?
                        .as_str()?
                        .to_string(),
                )
            })
        });
    match named {
        Some(other) if other != digest => Failure::new(format!(
            "{}: the signature at {signature_ref} was made for another image (its payload names {other}, not {digest})",
            image.whole()
        )),
        _ => Failure::new(format!(
            "{}: {signature_ref} holds no cosign signature of {digest}",
            image.whole()
        )),
    }
}
