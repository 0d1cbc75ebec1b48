// Package jwkkey turns the JWKs our services publish and keycreator writes
// into Go keys for golang-jwt, which has no JWK support of its own: RFC 8037
// OKP Ed25519 (EdDSA) and RFC 7518 EC P-256 (ES256), from the members a
// client must use (kty, crv, x, y, d, kid).
//
// Shared by the Go programs of the repository (the benchmark's Go baseline,
// scripts/bench/go-baseline, and the interop test client,
// tests/interop/go_client), which build offline in GOPATH mode with
// GOPATH=<repo>/scripts/gopath:/usr/share/gocode.
package jwkkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
)

// JWK holds the members of a JSON Web Key these algorithms use.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
	Kid string `json:"kid"`
}

// Set is a JWK Set (RFC 7517 section 5).
type Set struct {
	Keys []JWK `json:"keys"`
}

// Find is the key of the set with this kid.
func (s Set) Find(kid string) (JWK, error) {
	for _, key := range s.Keys {
		if key.Kid == kid {
			return key, nil
		}
	}
	return JWK{}, fmt.Errorf("no key with kid %q", kid)
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// PublicKey is the Go key of a public JWK of alg: ed25519.PublicKey or
// *ecdsa.PublicKey, as golang-jwt's verifiers take them.
func (key JWK) PublicKey(alg string) (interface{}, error) {
	x, err := b64(key.X)
	if err != nil {
		return nil, err
	}
	switch {
	case alg == "EdDSA" && key.Kty == "OKP" && key.Crv == "Ed25519":
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 x is not 32 bytes")
		}
		return ed25519.PublicKey(x), nil
	case alg == "ES256" && key.Kty == "EC" && key.Crv == "P-256":
		y, err := b64(key.Y)
		if err != nil {
			return nil, err
		}
		if len(x) != 32 || len(y) != 32 {
			return nil, errors.New("P-256 coordinates are not 32 bytes")
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			return nil, errors.New("point is not on P-256")
		}
		return pub, nil
	}
	return nil, fmt.Errorf("not a public key for %s: kty %q crv %q", alg, key.Kty, key.Crv)
}

// PrivateKey is the Go key of a private JWK of alg: ed25519.PrivateKey or
// *ecdsa.PrivateKey, as golang-jwt's signers take them.
func (key JWK) PrivateKey(alg string) (interface{}, error) {
	d, err := b64(key.D)
	if err != nil {
		return nil, err
	}
	pub, err := key.PublicKey(alg)
	if err != nil {
		return nil, err
	}
	switch alg {
	case "EdDSA":
		if len(d) != ed25519.SeedSize {
			return nil, errors.New("Ed25519 d is not 32 bytes")
		}
		return ed25519.NewKeyFromSeed(d), nil
	case "ES256":
		return &ecdsa.PrivateKey{PublicKey: *pub.(*ecdsa.PublicKey), D: new(big.Int).SetBytes(d)}, nil
	}
	return nil, fmt.Errorf("cannot sign %s", alg)
}
