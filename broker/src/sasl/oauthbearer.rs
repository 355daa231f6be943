//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255 and KIP-768): the client
//! sends a JWT; it is accepted when its signature verifies against a key of
//! the configured JWKS file (RS256/384/512, ES256/384), it has not expired
//! (`exp` required; `nbf` honoured; a clock skew allowed), and its issuer
//! and audience are the configured ones. The principal is its `sub` claim
//! (`--sasl-oauthbearer-sub-claim-name`). Unsigned tokens (`alg: none`,
//! what clients' "unsecured" test modes make) are refused.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

#[derive(Debug, Clone)]
enum Key {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y) and its curve's size.
    Ec {
        point: Vec<u8>,
        curve: &'static str,
    },
}

/// The validation settings (Kafka's `sasl.oauthbearer.*`).
#[derive(Debug, Clone)]
pub struct OAuthBearer {
    /// By `kid`.
    keys: HashMap<String, Key>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub sub_claim: String,
    pub clock_skew_secs: u64,
}

fn b64(v: &Value, field: &str) -> Result<Vec<u8>, String> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a key without `{field}`"))?;
    B64URL
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("`{field}` is not base64url: {e}"))
}

impl OAuthBearer {
    /// Reads a JWKS file (`{"keys": [...]}`): RSA keys (`n`, `e`) and EC
    /// keys on P-256 or P-384 (`x`, `y`), each with its `kid`.
    pub fn load(
        path: &Path,
        issuer: Option<String>,
        audience: Option<String>,
        sub_claim: Option<String>,
        clock_skew_secs: u64,
    ) -> Result<OAuthBearer, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the JWKS file {}: {e}", path.display()))?;
        let keys = Self::parse_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(OAuthBearer {
            keys,
            issuer,
            audience,
            sub_claim: sub_claim.unwrap_or_else(|| "sub".to_string()),
            clock_skew_secs,
        })
    }

    fn parse_jwks(text: &str) -> Result<HashMap<String, Key>, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("no `keys` array")?;
        let mut keys = HashMap::new();
        for k in list {
            let kid = k
                .get("kid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let key = match k.get("kty").and_then(Value::as_str) {
                Some("RSA") => Key::Rsa {
                    n: b64(k, "n")?,
                    e: b64(k, "e")?,
                },
                Some("EC") => {
                    let curve = match k.get("crv").and_then(Value::as_str) {
                        Some("P-256") => "P-256",
                        Some("P-384") => "P-384",
                        other => return Err(format!("EC curve {other:?} is not served")),
                    };
                    let mut point = vec![4u8];
                    point.extend(b64(k, "x")?);
                    point.extend(b64(k, "y")?);
                    Key::Ec { point, curve }
                }
                // Symmetric and other keys: not for verifying a third party's tokens.
                _ => continue,
            };
            keys.insert(kid, key);
        }
        if keys.is_empty() {
            return Err("no RSA or EC key".into());
        }
        Ok(keys)
    }

    /// The principal's name and the token's expiry (seconds since the
    /// epoch), or why the token is refused.
    pub fn validate(&self, token: &str, now: u64) -> Result<(String, u64), String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a signed JWT (three parts)".into());
        };
        let decode = |s: &str, what: &str| -> Result<Vec<u8>, String> {
            B64URL
                .decode(s)
                .map_err(|e| format!("the {what} is not base64url: {e}"))
        };
        let header: Value = serde_json::from_slice(&decode(h, "header")?)
            .map_err(|e| format!("the header is not JSON: {e}"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str).unwrap_or("");
        let key = match self.keys.get(kid) {
            Some(k) => k,
            None if kid.is_empty() && self.keys.len() == 1 => {
                self.keys.values().next().ok_or("no key")?
            }
            None => return Err(format!("no key with kid {kid:?}")),
        };
        let signed = &token[..h.len() + 1 + p.len()];
        let sig = decode(sig, "signature")?;
        let ok = match (alg, key) {
            ("RS256" | "RS384" | "RS512", Key::Rsa { n, e }) => {
                let params = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA512,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, signed.as_bytes(), &sig)
                    .is_ok()
            }
            (
                "ES256",
                Key::Ec {
                    point,
                    curve: "P-256",
                },
            ) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed.as_bytes(), &sig)
                .is_ok(),
            (
                "ES384",
                Key::Ec {
                    point,
                    curve: "P-384",
                },
            ) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(signed.as_bytes(), &sig)
                .is_ok(),
            ("none", _) | ("", _) => return Err("an unsigned token (alg none)".into()),
            (alg, _) => return Err(format!("alg {alg:?} does not fit key {kid:?}")),
        };
        if !ok {
            return Err("the signature does not verify".into());
        }
        let claims: Value = serde_json::from_slice(&decode(p, "payload")?)
            .map_err(|e| format!("the claims are not JSON: {e}"))?;
        let skew = self.clock_skew_secs;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("no `exp` claim")?;
        if now > exp.saturating_add(skew) {
            return Err(format!("expired at {exp} (now {now})"));
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
            && now.saturating_add(skew) < nbf
        {
            return Err(format!("not valid before {nbf} (now {now})"));
        }
        if let Some(want) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(want.as_str())
        {
            return Err(format!("issuer {:?}, not {want:?}", claims.get("iss")));
        }
        if let Some(want) = &self.audience {
            let aud = claims.get("aud");
            let ok = match aud {
                Some(Value::String(a)) => a == want,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want.as_str())),
                _ => false,
            };
            if !ok {
                return Err(format!("audience {aud:?}, not {want:?}"));
            }
        }
        let sub = claims
            .get(&self.sub_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("no `{}` claim", self.sub_claim))?;
        Ok((sub.to_string(), exp))
    }
}

/// The client's first message (RFC 7628): a GS2 header, then
/// `auth=Bearer <token>` and optional `key=value` extensions, each ended by
/// 0x01, and a final 0x01. The token, or None when malformed.
pub fn parse_client_message(msg: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(msg).ok()?;
    let (gs2, rest) = s.split_once('\u{1}')?;
    if !gs2.starts_with("n,") || !gs2.ends_with(',') {
        return None;
    }
    let body = rest.strip_suffix("\u{1}\u{1}")?;
    let mut token = None;
    for kv in body.split('\u{1}') {
        let (k, v) = kv.split_once('=')?;
        if k == "auth" {
            token = Some(v.strip_prefix("Bearer ")?.trim().to_string());
        }
    }
    token.filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};

    fn b(v: &[u8]) -> String {
        B64URL.encode(v)
    }

    /// An ES256 key, its JWKS, and a signer.
    fn es256() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        let jwks = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k1","x":"{}","y":"{}"}}]}}"#,
            b(&public[1..33]),
            b(&public[33..65])
        );
        (pair, jwks)
    }

    fn token(pair: &EcdsaKeyPair, header: &str, claims: &str) -> String {
        let signed = format!("{}.{}", b(header.as_bytes()), b(claims.as_bytes()));
        let sig = pair.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
        format!("{signed}.{}", b(sig.as_ref()))
    }

    #[test]
    fn signed_tokens_are_checked_claim_by_claim() {
        let (pair, jwks) = es256();
        let v = OAuthBearer {
            keys: OAuthBearer::parse_jwks(&jwks).unwrap(),
            issuer: Some("https://issuer".into()),
            audience: Some("karnak".into()),
            sub_claim: "sub".into(),
            clock_skew_secs: 30,
        };
        let h = r#"{"alg":"ES256","kid":"k1"}"#;
        let good = r#"{"sub":"alice","exp":2000,"iss":"https://issuer","aud":["x","karnak"]}"#;
        assert_eq!(
            v.validate(&token(&pair, h, good), 1000),
            Ok(("alice".into(), 2000))
        );
        // Expired (past the skew), wrong issuer or audience, no sub, no exp.
        for (claims, now) in [
            (good, 2031),
            (
                r#"{"sub":"alice","exp":2000,"iss":"https://other","aud":"karnak"}"#,
                1000,
            ),
            (
                r#"{"sub":"alice","exp":2000,"iss":"https://issuer","aud":"other"}"#,
                1000,
            ),
            (
                r#"{"exp":2000,"iss":"https://issuer","aud":"karnak"}"#,
                1000,
            ),
            (
                r#"{"sub":"alice","iss":"https://issuer","aud":"karnak"}"#,
                1000,
            ),
            (
                r#"{"sub":"alice","exp":2000,"nbf":1500,"iss":"https://issuer","aud":"karnak"}"#,
                1000,
            ),
        ] {
            assert!(
                v.validate(&token(&pair, h, claims), now).is_err(),
                "{claims} at {now}"
            );
        }
        // A bad signature, another key's, alg none, an unknown kid, garbage.
        let t = token(&pair, h, good);
        let tampered = format!("{}x", &t[..t.len() - 1]);
        assert!(v.validate(&tampered, 1000).is_err());
        let (other, _) = es256();
        assert!(v.validate(&token(&other, h, good), 1000).is_err());
        let none = format!("{}.{}.", b(br#"{"alg":"none"}"#), b(good.as_bytes()));
        assert!(v.validate(&none, 1000).unwrap_err().contains("alg none"));
        assert!(
            v.validate(&token(&pair, r#"{"alg":"ES256","kid":"k9"}"#, good), 1000)
                .is_err()
        );
        assert!(v.validate("not.a.jwt.at.all", 1000).is_err());
    }

    #[test]
    fn client_messages_per_rfc_7628() {
        assert_eq!(
            parse_client_message(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").as_deref(),
            Some("abc.def.ghi")
        );
        assert_eq!(
            parse_client_message(b"n,a=alice,\x01auth=Bearer t\x01ext=1\x01\x01").as_deref(),
            Some("t")
        );
        for bad in [
            &b"n,,\x01auth=Bearer t\x01"[..],
            b"auth=Bearer t",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01\x01",
        ] {
            assert_eq!(parse_client_message(bad), None, "{bad:?}");
        }
    }
}
