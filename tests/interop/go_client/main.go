// The Go baseline client of tests/interop/test_interop.py: golang-jwt/jwt
// v4 (Debian's golang-github-golang-jwt-jwt-dev, built in GOPATH mode,
// offline) verifies our tokens with keys fetched from the published JWK
// Set, and signs tokens with the creator's private JWK.
//
// golang-jwt has no JWK support: scripts/gopath/src/wasmjwt/jwkkey turns
// the JWKs into Go keys (shared with the benchmark's Go baseline). One JSON
// request on stdin, one JSON answer on stdout (the same shape as
// jose_client.mjs):
//
//	{"verify": [{"jwks_url", "token", "alg", "issuer"?, "audience"?}, ...],
//	 "sign":   [{"jwk", "alg", "header", "payload"}, ...]}
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt"
	"wasmjwt/jwkkey"
)

type verifyTask struct {
	JwksURL  string `json:"jwks_url"`
	Token    string `json:"token"`
	Alg      string `json:"alg"`
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

type signTask struct {
	Jwk     jwkkey.JWK             `json:"jwk"`
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

var keySets = map[string]jwkkey.Set{}

func fetchKeySet(url string) (jwkkey.Set, error) {
	if keys, ok := keySets[url]; ok {
		return keys, nil
	}
	response, err := http.Get(url)
	if err != nil {
		return jwkkey.Set{}, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return jwkkey.Set{}, fmt.Errorf("GET %s: %s", url, response.Status)
	}
	var set jwkkey.Set
	body, err := io.ReadAll(response.Body)
	if err != nil {
		return jwkkey.Set{}, err
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return jwkkey.Set{}, err
	}
	keySets[url] = set
	return set, nil
}

func verify(task verifyTask) verifyResult {
	keys, err := fetchKeySet(task.JwksURL)
	if err != nil {
		return verifyResult{Code: "fetch", Message: err.Error()}
	}
	claims := jwt.MapClaims{}
	token, err := jwt.ParseWithClaims(task.Token, claims, func(token *jwt.Token) (interface{}, error) {
		kid, _ := token.Header["kid"].(string)
		key, err := keys.Find(kid)
		if err != nil {
			return nil, err
		}
		return key.PublicKey(task.Alg)
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
	key, err := task.Jwk.PrivateKey(task.Alg)
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
