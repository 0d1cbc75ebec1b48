// The Go baseline client of tests/interop/test_interop.py: golang-jwt/jwt
// v4 (Debian's golang-github-golang-jwt-jwt-dev, built in GOPATH mode,
// offline) verifies our tokens with keys fetched from the published JWK
// Set, and signs tokens with the creator's private JWK.
//
// golang-jwt has no JWK support, so the JWKs are turned into Go keys here
// by hand (RFC 8037 OKP Ed25519, RFC 7518 EC P-256), from the members a
// client must use: kty, crv, x, y, d, kid. One JSON request on stdin, one
// JSON answer on stdout (the same shape as jose_client.mjs):
//
//	{"verify": [{"jwks_url", "token", "alg", "issuer"?, "audience"?}, ...],
//	 "sign":   [{"jwk", "alg", "header", "payload"}, ...]}
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt"
)

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
	Kid string `json:"kid"`
}

type verifyTask struct {
	JwksURL  string `json:"jwks_url"`
	Token    string `json:"token"`
	Alg      string `json:"alg"`
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

type signTask struct {
	Jwk     jwk                    `json:"jwk"`
	Alg     string                 `json:"alg"`
	Header  map[string]interface{} `json:"header"`
	Payload map[string]interface{} `json:"payload"`
}

type request struct {
	Verify []verifyTask `json:"verify"`
	Sign   []signTask   `json:"sign"`
}

type verifyResult struct {
	Ok      bool                   `json:"ok"`
	Header  map[string]interface{} `json:"header,omitempty"`
	Payload map[string]interface{} `json:"payload,omitempty"`
	Code    string                 `json:"code,omitempty"`
	Message string                 `json:"message,omitempty"`
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// publicKey is the Go key of a public JWK of alg.
func publicKey(key jwk, alg string) (interface{}, error) {
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

// privateKey is the Go key of a private JWK of alg.
func privateKey(key jwk, alg string) (interface{}, error) {
	d, err := b64(key.D)
	if err != nil {
		return nil, err
	}
	pub, err := publicKey(key, alg)
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

var keySets = map[string][]jwk{}

func fetchKeySet(url string) ([]jwk, error) {
	if keys, ok := keySets[url]; ok {
		return keys, nil
	}
	response, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, response.Status)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	keySets[url] = set.Keys
	return set.Keys, nil
}

func verify(task verifyTask) verifyResult {
	keys, err := fetchKeySet(task.JwksURL)
	if err != nil {
		return verifyResult{Code: "fetch", Message: err.Error()}
	}
	claims := jwt.MapClaims{}
	token, err := jwt.ParseWithClaims(task.Token, claims, func(token *jwt.Token) (interface{}, error) {
		kid, _ := token.Header["kid"].(string)
		for _, key := range keys {
			if key.Kid == kid {
				return publicKey(key, task.Alg)
			}
		}
		return nil, fmt.Errorf("no key with kid %q", kid)
	}, jwt.WithValidMethods([]string{task.Alg}))
	if err != nil {
		return verifyResult{Code: "invalid", Message: err.Error()}
	}
	now := time.Now().Unix()
	switch {
	case !claims.VerifyExpiresAt(now, true):
		return verifyResult{Code: "exp", Message: "exp missing or passed"}
	case task.Issuer != "" && !claims.VerifyIssuer(task.Issuer, true):
		return verifyResult{Code: "iss", Message: "issuer not accepted"}
	case task.Audience != "" && !claims.VerifyAudience(task.Audience, true):
		return verifyResult{Code: "aud", Message: "audience not accepted"}
	}
	return verifyResult{Ok: true, Header: token.Header, Payload: claims}
}

func sign(task signTask) (string, error) {
	key, err := privateKey(task.Jwk, task.Alg)
	if err != nil {
		return "", err
	}
	method := jwt.GetSigningMethod(task.Alg)
	if method == nil {
		return "", fmt.Errorf("no signing method %s", task.Alg)
	}
	token := jwt.NewWithClaims(method, jwt.MapClaims(task.Payload))
	for name, value := range task.Header {
		token.Header[name] = value
	}
	return token.SignedString(key)
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "go_client:", err)
		os.Exit(2)
	}
	answer := struct {
		Verify []verifyResult `json:"verify"`
		Sign   []string       `json:"sign"`
	}{Verify: []verifyResult{}, Sign: []string{}}
	for _, task := range req.Verify {
		answer.Verify = append(answer.Verify, verify(task))
	}
	for _, task := range req.Sign {
		token, err := sign(task)
		if err != nil {
			fmt.Fprintln(os.Stderr, "go_client: sign:", err)
			os.Exit(2)
		}
		answer.Sign = append(answer.Sign, token)
	}
	if err := json.NewEncoder(os.Stdout).Encode(answer); err != nil {
		fmt.Fprintln(os.Stderr, "go_client:", err)
		os.Exit(2)
	}
}
