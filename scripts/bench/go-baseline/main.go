// Command go-baseline is the benchmark's stand-in for what users run today:
// a plain Go net/http server with golang-jwt, serving the same contract as
// the creator and verifier (routes, status codes, JSON error bodies, tokens
// with a kid header, the key files written by keycreator).
//
// TOKEN_ALG picks the algorithm, as in the services: HS256 (the default; the
// key file), EdDSA or ES256 (signing-key.json, the private JWK, for the
// creator; jwks.json, the public keys, for the verifier; both next to the
// key file). It reads a key file the way a long-running Go service would:
// once, and again only when the file's modification time or size changes
// (one stat per request, as native-server does), so key rotation works
// without a restart.
//
// Built by scripts/bench.sh from Debian's golang-go and
// golang-github-golang-jwt-jwt-dev, GOPATH mode (no module proxy needed),
// with the repository's scripts/gopath for the JWK parsing.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt"
	"wasmjwt/jwkkey"
)

const (
	maxBody     = 64 * 1024
	maxTokenLen = 8 * 1024
	keyHexLen   = 128
)

type key struct {
	secret []byte
	kid    string
}

// signingKey is the creator's private key under EdDSA and ES256.
type signingKey struct {
	key interface{}
	kid string
}

// keyFile caches one key file, parsed, reloading it when its mtime or size
// changes.
type keyFile struct {
	path  string
	parse func(path string, data []byte) (interface{}, error)
	mu    sync.Mutex
	mod   time.Time
	size  int64
	value interface{}
}

func (f *keyFile) load() (interface{}, error) {
	info, err := os.Stat(f.path)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.value != nil && info.ModTime().Equal(f.mod) && info.Size() == f.size {
		return f.value, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	value, err := f.parse(f.path, data)
	if err != nil {
		return nil, err
	}
	f.value, f.mod, f.size = value, info.ModTime(), info.Size()
	return value, nil
}

// parseSecret reads an HS256 key file: 128 hex characters, kid = the first
// 8 bytes of their SHA-256, in hex.
func parseSecret(path string, data []byte) (interface{}, error) {
	if len(data) != keyHexLen {
		return nil, fmt.Errorf("%s: expected %d hex characters, found %d bytes", path, keyHexLen, len(data))
	}
	sum := sha256.Sum256(data)
	return &key{secret: data, kid: hex.EncodeToString(sum[:8])}, nil
}

func parseSigningKey(alg string) func(string, []byte) (interface{}, error) {
	return func(path string, data []byte) (interface{}, error) {
		var jwk jwkkey.JWK
		if err := json.Unmarshal(data, &jwk); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		private, err := jwk.PrivateKey(alg)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		return &signingKey{key: private, kid: jwk.Kid}, nil
	}
}

// parseKeySet reads jwks.json into the public keys by kid.
func parseKeySet(alg string) func(string, []byte) (interface{}, error) {
	return func(path string, data []byte) (interface{}, error) {
		var set jwkkey.Set
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		keys := make(map[string]interface{}, len(set.Keys))
		for _, jwk := range set.Keys {
			public, err := jwk.PublicKey(alg)
			if err != nil {
				return nil, fmt.Errorf("%s: kid %q: %v", path, jwk.Kid, err)
			}
			keys[jwk.Kid] = public
		}
		return keys, nil
	}
}

type server struct {
	endpoint string // "creator" or "verifier"
	alg      string // HS256, EdDSA or ES256
	method   jwt.SigningMethod
	ttl      time.Duration
	current  *keyFile // HS256: key.txt; EdDSA, ES256: signing-key.json (creator) or jwks.json (verifier)
	previous *keyFile // HS256 only
}

func writeError(w http.ResponseWriter, status int, code, detail string) {
	body, _ := json.Marshal(map[string]string{"error": code, "detail": detail})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(text))
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route := "/create"
	if s.endpoint == "verifier" {
		route = "/verifier"
	}
	allowed := "POST"
	switch r.URL.Path {
	case "/healthz", "/readyz":
		allowed = "GET"
	case route:
	default:
		writeError(w, 404, "not_found", fmt.Sprintf("no route for %s; this service answers POST %s", r.URL.Path, route))
		return
	}
	if r.Method != allowed {
		w.Header().Set("Allow", allowed)
		writeError(w, 405, "method_not_allowed", fmt.Sprintf("%s %s is not supported; use %s", r.Method, r.URL.Path, allowed))
		return
	}
	switch r.URL.Path {
	case "/healthz":
		writeText(w, 200, "ok")
		return
	case "/readyz":
		if _, err := s.current.load(); err != nil {
			writeError(w, 503, "not_ready", err.Error())
			return
		}
		writeText(w, 200, "ready")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, 413, "payload_too_large", fmt.Sprintf("the limit is %d bytes", maxBody))
		} else {
			writeError(w, 400, "malformed_json", "request body is not valid JSON: "+err.Error())
		}
		return
	}
	if s.endpoint == "creator" {
		s.create(w, body)
	} else {
		s.verify(w, body)
	}
}

func (s *server) create(w http.ResponseWriter, body map[string]any) {
	username, ok := body["username"].(string)
	_, hasPassword := body["password"].(string)
	if !ok || !hasPassword {
		writeError(w, 400, "invalid_request", "request body has the wrong shape: username and password must be strings")
		return
	}
	if username == "" {
		writeError(w, 400, "invalid_request", "username must not be empty")
		return
	}
	loaded, err := s.current.load()
	if err != nil {
		writeError(w, 503, "key_unavailable", err.Error())
		return
	}
	now := time.Now().Unix()
	token := jwt.NewWithClaims(s.method, jwt.MapClaims{
		"username": username,
		"iat":      now,
		"exp":      now + int64(s.ttl/time.Second),
	})
	var signed string
	if k, ok := loaded.(*key); ok {
		token.Header["kid"] = k.kid
		signed, err = token.SignedString(k.secret)
	} else {
		k := loaded.(*signingKey)
		token.Header["kid"] = k.kid
		signed, err = token.SignedString(k.key)
	}
	if err != nil {
		writeError(w, 500, "internal", err.Error())
		return
	}
	if len(signed) > maxTokenLen {
		writeError(w, 400, "invalid_request", "username is too long")
		return
	}
	writeText(w, 200, signed)
}

func (s *server) verify(w http.ResponseWriter, body map[string]any) {
	raw, ok := body["token"].(string)
	if !ok {
		writeError(w, 400, "invalid_request", "request body has the wrong shape: token must be a string")
		return
	}
	if len(raw) > maxTokenLen {
		s.unauthorized(w, fmt.Sprintf("token is longer than %d bytes", maxTokenLen))
		return
	}
	loaded, err := s.current.load()
	if err != nil {
		writeError(w, 503, "key_unavailable", err.Error())
		return
	}
	parser := jwt.Parser{ValidMethods: []string{s.alg}}
	claims := jwt.MapClaims{}
	_, err = parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if keys, ok := loaded.(map[string]interface{}); ok {
			if public, found := keys[kid]; found {
				return public, nil
			}
			return nil, errors.New("unknown key id")
		}
		current := loaded.(*key)
		if kid == "" || kid == current.kid {
			return current.secret, nil
		}
		if previous, err := s.previous.load(); err == nil && previous.(*key).kid == kid {
			return previous.(*key).secret, nil
		}
		return nil, errors.New("unknown key id")
	})
	if err != nil {
		s.unauthorized(w, err.Error())
		return
	}
	username, ok := claims["username"].(string)
	if _, hasExp := claims["exp"]; !ok || !hasExp {
		s.unauthorized(w, "token has no username or no exp claim")
		return
	}
	writeText(w, 200, username)
}

func (s *server) unauthorized(w http.ResponseWriter, detail string) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeError(w, 401, "invalid_token", detail)
}

func main() {
	endpoint := flag.String("endpoint", "creator", "creator or verifier")
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	keyPath := flag.String("key-file", "/usr/share/key/key.txt", "key file written by keycreator")
	flag.Parse()
	if *endpoint != "creator" && *endpoint != "verifier" {
		log.Fatalf("--endpoint must be creator or verifier, got %q", *endpoint)
	}
	ttl := 300 * time.Second
	if v := os.Getenv("TOKEN_TTL_SECONDS"); v != "" {
		seconds, err := strconv.Atoi(v)
		if err != nil || seconds < 1 || seconds > 86400 {
			log.Fatalf("TOKEN_TTL_SECONDS must be 1..86400, got %q", v)
		}
		ttl = time.Duration(seconds) * time.Second
	}
	dir := filepath.Dir(*keyPath)
	s := &server{endpoint: *endpoint, ttl: ttl, alg: os.Getenv("TOKEN_ALG")}
	switch s.alg {
	case "", "HS256":
		s.alg = "HS256"
		s.current = &keyFile{path: *keyPath, parse: parseSecret}
		s.previous = &keyFile{path: filepath.Join(dir, "previous-key.txt"), parse: parseSecret}
	case "EdDSA", "ES256":
		if *endpoint == "creator" {
			s.current = &keyFile{path: filepath.Join(dir, "signing-key.json"), parse: parseSigningKey(s.alg)}
		} else {
			s.current = &keyFile{path: filepath.Join(dir, "jwks.json"), parse: parseKeySet(s.alg)}
		}
	default:
		log.Fatalf("TOKEN_ALG must be HS256, EdDSA or ES256, got %q", s.alg)
	}
	s.method = jwt.GetSigningMethod(s.alg)
	log.Fatal(http.ListenAndServe(*addr, s))
}
