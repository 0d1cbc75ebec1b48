// The npm `jose` library as an independent client of the token services,
// driven by tests/interop/test_interop.py: one JSON request on stdin, one
// JSON answer on stdout, so that a whole batch costs one Node start.
//
//   {"verify": [{"jwks_url", "token", "alg", "issuer"?, "audience"?}, ...],
//    "sign":   [{"jwk", "alg", "header", "payload"}, ...]}
//
// verify: createRemoteJWKSet (one per URL, as an application keeps it) and
//   jwtVerify with the algorithm pinned; each answer is
//   {"ok": true, "header", "payload"} or {"ok": false, "code", "message"}.
// sign: importJWK of the private JWK and SignJWT; each answer is the token.

import { createRemoteJWKSet, importJWK, jwtVerify, SignJWT } from "jose";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const keySets = new Map();
function keySet(url) {
  if (!keySets.has(url)) keySets.set(url, createRemoteJWKSet(new URL(url)));
  return keySets.get(url);
}

const verified = [];
for (const task of request.verify ?? []) {
  const options = { algorithms: [task.alg] };
  if (task.issuer) options.issuer = task.issuer;
  if (task.audience) options.audience = task.audience;
  try {
    const { payload, protectedHeader } = await jwtVerify(task.token, keySet(task.jwks_url), options);
    verified.push({ ok: true, header: protectedHeader, payload });
  } catch (error) {
    verified.push({ ok: false, code: error.code ?? error.name, message: String(error.message) });
  }
}

const signed = [];
for (const task of request.sign ?? []) {
  const key = await importJWK(task.jwk, task.alg);
  signed.push(await new SignJWT(task.payload).setProtectedHeader(task.header).sign(key));
}

process.stdout.write(JSON.stringify({ verify: verified, sign: signed }));
