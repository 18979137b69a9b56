//! Webhook authentication, per source (docs/contract.md section 3): HTTP Basic, a static bearer token,
//! and Standard Webhooks HMAC-SHA256 signatures. Everything is checked on the raw request before
//! the body is parsed, every comparison of a secret runs in constant time, and secrets never
//! appear in `Debug` output, logs or errors.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a `webhook-timestamp` may be from now, either way (the Standard Webhooks default).
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// A secret value: compared in constant time, shown as `[redacted]`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    fn matches(&self, candidate: &[u8]) -> bool {
        // Lengths are not secret; contents are compared without early exit.
        self.0.len() == candidate.len() && bool::from(self.0.as_slice().ct_eq(candidate))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One way a sender may prove who it is.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// `Authorization: Basic base64(user:password)`; holds `user:password`.
    Basic(Secret),
    /// `Authorization: Bearer TOKEN`.
    Bearer(Secret),
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,BASE64`,
    /// several separated by spaces), HMAC-SHA256 over `id.timestamp.body` with the decoded key.
    StandardWebhooks(Secret),
}

/// Why a configuration value is not usable; the message never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Basic credentials need a colon.
    #[error("basic auth credentials must be USER:PASSWORD")]
    BasicWithoutColon,
    /// The webhook secret is not `whsec_` followed by base64.
    #[error("a webhook secret must be `whsec_` followed by base64")]
    BadWebhookSecret,
    /// Empty values authenticate nothing.
    #[error("an empty credential is not allowed")]
    Empty,
    /// Basic credentials with an empty user or password (`:`, `user:`, `:pass`), as a template
    /// like `$USER:$PASS` gives when a variable is unset.
    #[error("basic auth credentials need a user and a password, neither empty")]
    BasicEmptyPart,
}

impl Scheme {
    /// The scheme's name in a credential's label: `basic`, `bearer` or `secret`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scheme::Basic(_) => "basic",
            Scheme::Bearer(_) => "bearer",
            Scheme::StandardWebhooks(_) => "secret",
        }
    }

    /// HTTP Basic from `USER:PASSWORD`.
    pub fn basic(user_colon_password: &str) -> Result<Scheme, ConfigError> {
        if user_colon_password.is_empty() {
            return Err(ConfigError::Empty);
        }
        let Some((user, password)) = user_colon_password.split_once(':') else {
            return Err(ConfigError::BasicWithoutColon);
        };
        if user.is_empty() || password.is_empty() {
            return Err(ConfigError::BasicEmptyPart);
        }
        Ok(Scheme::Basic(Secret::new(user_colon_password.as_bytes())))
    }

    /// A static bearer token.
    pub fn bearer(token: &str) -> Result<Scheme, ConfigError> {
        if token.is_empty() {
            return Err(ConfigError::Empty);
        }
        Ok(Scheme::Bearer(Secret::new(token.as_bytes())))
    }

    /// A Standard Webhooks secret: `whsec_` then the base64 key (the prefix is optional, as in
    /// the reference implementations).
    pub fn standard_webhooks(secret: &str) -> Result<Scheme, ConfigError> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        if encoded.is_empty() {
            return Err(ConfigError::Empty);
        }
        let key = BASE64
            .decode(encoded)
            .map_err(|_| ConfigError::BadWebhookSecret)?;
        Ok(Scheme::StandardWebhooks(Secret::new(key)))
    }
}

/// Why a request was refused (answered 401). Safe to log: it holds no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No credentials of any configured scheme.
    #[error("missing credentials")]
    Missing,
    /// Credentials present but wrong.
    #[error("invalid credentials")]
    Invalid,
    /// A signature header is present but malformed, or the timestamp is not a number.
    #[error("malformed signature headers")]
    Malformed,
    /// The signed timestamp is more than five minutes from now.
    #[error("signature timestamp outside the tolerance")]
    Stale,
}

/// The credentials that authenticate one source (or the read API). None configured: every
/// request is accepted. Several of one scheme may be configured at once, old and new during a
/// rotation; each has a label that is not secret, its scheme and its place among that scheme's
/// credentials (`bearer-1`, `bearer-2`), for metrics and logs to say which one a sender used.
#[derive(Debug, Clone, Default)]
pub struct SourceAuth {
    schemes: Vec<Scheme>,
    labels: Vec<String>,
}

impl SourceAuth {
    /// Accepts a request that satisfies any one of `schemes`.
    pub fn new(schemes: Vec<Scheme>) -> SourceAuth {
        let mut seen: Vec<&str> = Vec::new();
        let labels = schemes
            .iter()
            .map(|s| {
                seen.push(s.kind());
                let n = seen.iter().filter(|k| **k == s.kind()).count();
                format!("{}-{n}", s.kind())
            })
            .collect();
        SourceAuth { schemes, labels }
    }

    /// The credentials' labels, in the order they were given.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Whether anything is configured.
    pub fn is_open(&self) -> bool {
        self.schemes.is_empty()
    }

    /// Whether checking needs the body (a signature scheme is configured). Otherwise requests
    /// are checked before the body is read.
    pub fn needs_body(&self) -> bool {
        self.schemes
            .iter()
            .any(|s| matches!(s, Scheme::StandardWebhooks(_)))
    }

    /// The `WWW-Authenticate` challenges of a 401 (RFC 9110 section 11.6.1, which asks for at
    /// least one): one per configured scheme. Standard Webhooks has no registered scheme name;
    /// its challenge, `StandardWebhooks`, only names it, and clients that do not know it
    /// ignore it. `None` when nothing is configured (nothing is refused then).
    pub fn challenge(&self) -> Option<axum::http::HeaderValue> {
        let challenges: Vec<&str> = self
            .schemes
            .iter()
            .map(|s| match s {
                Scheme::Basic(_) => r#"Basic realm="journeyd", charset="UTF-8""#,
                Scheme::Bearer(_) => r#"Bearer realm="journeyd""#,
                Scheme::StandardWebhooks(_) => r#"StandardWebhooks realm="journeyd""#,
            })
            .collect();
        if challenges.is_empty() {
            return None;
        }
        axum::http::HeaderValue::from_str(&challenges.join(", ")).ok()
    }

    /// Checks a request's headers and raw body against the configured schemes. `now` is Unix
    /// seconds (time comes in as an argument).
    pub fn check(&self, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refused> {
        self.authenticate(headers, body, now).map(|_| ())
    }

    /// As [`SourceAuth::check`], saying which credential authenticated the request: its label,
    /// or `None` when nothing is configured.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Option<&str>, Refused> {
        if self.schemes.is_empty() {
            return Ok(None);
        }
        let mut worst = Refused::Missing;
        for (scheme, label) in self.schemes.iter().zip(&self.labels) {
            match check_one(scheme, headers, body, now) {
                Ok(()) => return Ok(Some(label)),
                // Report the most specific reason any scheme gave.
                Err(Refused::Missing) => {}
                Err(e) => worst = e,
            }
        }
        Err(worst)
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_one(scheme: &Scheme, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), Refused> {
    match scheme {
        Scheme::Basic(expected) => {
            let value = header(headers, "authorization").ok_or(Refused::Missing)?;
            let Some(encoded) = strip_scheme(value, "basic") else {
                return Err(Refused::Missing);
            };
            let decoded = BASE64
                .decode(encoded.trim())
                .map_err(|_| Refused::Invalid)?;
            if expected.matches(&decoded) {
                Ok(())
            } else {
                Err(Refused::Invalid)
            }
        }
        Scheme::Bearer(expected) => {
            let value = header(headers, "authorization").ok_or(Refused::Missing)?;
            let Some(token) = strip_scheme(value, "bearer") else {
                return Err(Refused::Missing);
            };
            if expected.matches(token.trim().as_bytes()) {
                Ok(())
            } else {
                Err(Refused::Invalid)
            }
        }
        Scheme::StandardWebhooks(key) => {
            let (Some(id), Some(timestamp), Some(signatures)) = (
                header(headers, "webhook-id"),
                header(headers, "webhook-timestamp"),
                header(headers, "webhook-signature"),
            ) else {
                return Err(Refused::Missing);
            };
            let ts_text = timestamp.trim();
            let ts: i64 = ts_text.parse().map_err(|_| Refused::Malformed)?;
            if now.abs_diff(ts) > TOLERANCE_SECS.unsigned_abs() {
                return Err(Refused::Stale);
            }
            // Signed over the header's own text, as the sender wrote it.
            let expected = sign(key, id, ts_text, body);
            let mut any = false;
            for candidate in signatures.split(' ').filter(|s| !s.is_empty()) {
                any = true;
                let Some(encoded) = candidate.strip_prefix("v1,") else {
                    continue;
                };
                let Ok(sig) = BASE64.decode(encoded) else {
                    continue;
                };
                if sig.len() == expected.len() && bool::from(sig.as_slice().ct_eq(&expected)) {
                    return Ok(());
                }
            }
            if any {
                Err(Refused::Invalid)
            } else {
                Err(Refused::Malformed)
            }
        }
    }
}

/// `Basic xxx` -> `xxx`, matching the scheme name without regard to case.
fn strip_scheme<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let (name, rest) = value.split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn sign(key: &Secret, id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&key.0) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Signs as a Standard Webhooks sender would: `v1,BASE64`. For tests and tools.
pub fn standard_webhooks_signature(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, ConfigError> {
    let Scheme::StandardWebhooks(key) = Scheme::standard_webhooks(secret)? else {
        return Err(ConfigError::BadWebhookSecret);
    };
    Ok(format!(
        "v1,{}",
        BASE64.encode(sign(&key, id, &timestamp.to_string(), body))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// A 401 names the schemes a client can answer, and never a secret.
    #[test]
    fn the_challenge_lists_the_http_schemes_configured() {
        let (basic, bearer, signed) = (
            || Scheme::basic("mx:pass").expect("basic"),
            || Scheme::bearer("tok").expect("bearer"),
            || Scheme::standard_webhooks(VECTOR_SECRET).expect("signed"),
        );
        let challenge = |schemes| SourceAuth::new(schemes).challenge();
        assert_eq!(
            challenge(vec![basic(), signed(), bearer()]).expect("some"),
            r#"Basic realm="journeyd", charset="UTF-8", StandardWebhooks realm="journeyd", Bearer realm="journeyd""#
        );
        assert_eq!(
            challenge(vec![bearer()]).expect("some"),
            r#"Bearer realm="journeyd""#
        );
        assert_eq!(
            challenge(vec![signed()]).expect("some"),
            r#"StandardWebhooks realm="journeyd""#
        );
        assert_eq!(challenge(vec![]), None);
    }
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    fn signed(sig: &str, ts: i64) -> HeaderMap {
        headers(&[
            ("webhook-id", VECTOR_ID),
            ("webhook-timestamp", &ts.to_string()),
            ("webhook-signature", sig),
        ])
    }

    #[test]
    fn the_published_standard_webhooks_test_vector_verifies() {
        assert_eq!(
            standard_webhooks_signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
                .expect("sign"),
            VECTOR_SIG
        );
        let auth = SourceAuth::new(vec![
            Scheme::standard_webhooks(VECTOR_SECRET).expect("secret"),
        ]);
        assert_eq!(
            auth.check(&signed(VECTOR_SIG, VECTOR_TS), VECTOR_BODY, VECTOR_TS),
            Ok(())
        );
        // One of several signatures is enough (key rotation).
        let several = format!("v1,bm9wZQ== {VECTOR_SIG}");
        assert_eq!(
            auth.check(&signed(&several, VECTOR_TS), VECTOR_BODY, VECTOR_TS + 10),
            Ok(())
        );
    }

    #[test]
    fn signatures_are_refused_when_anything_differs() {
        let auth = SourceAuth::new(vec![
            Scheme::standard_webhooks(VECTOR_SECRET).expect("secret"),
        ]);
        let h = signed(VECTOR_SIG, VECTOR_TS);
        assert_eq!(
            auth.check(&h, br#"{"test": 2432232315}"#, VECTOR_TS),
            Err(Refused::Invalid),
            "another body"
        );
        assert_eq!(
            auth.check(&h, VECTOR_BODY, VECTOR_TS + TOLERANCE_SECS + 1),
            Err(Refused::Stale),
            "too old"
        );
        assert_eq!(
            auth.check(&h, VECTOR_BODY, VECTOR_TS - TOLERANCE_SECS - 1),
            Err(Refused::Stale),
            "from the future"
        );
        assert_eq!(
            auth.check(&h, VECTOR_BODY, VECTOR_TS + TOLERANCE_SECS),
            Ok(()),
            "at the edge"
        );
        assert_eq!(
            auth.check(&signed("v2,abc", VECTOR_TS), VECTOR_BODY, VECTOR_TS),
            Err(Refused::Invalid)
        );
        assert_eq!(
            auth.check(
                &signed(VECTOR_SIG, VECTOR_TS).clone(),
                VECTOR_BODY,
                VECTOR_TS
            ),
            Ok(())
        );
        let other = SourceAuth::new(vec![
            Scheme::standard_webhooks("whsec_c2VjcmV0").expect("secret"),
        ]);
        assert_eq!(
            other.check(&h, VECTOR_BODY, VECTOR_TS),
            Err(Refused::Invalid),
            "another key"
        );
        assert_eq!(
            auth.check(&HeaderMap::new(), VECTOR_BODY, VECTOR_TS),
            Err(Refused::Missing)
        );
        let bad_ts = headers(&[
            ("webhook-id", "x"),
            ("webhook-timestamp", "soon"),
            ("webhook-signature", VECTOR_SIG),
        ]);
        assert_eq!(
            auth.check(&bad_ts, VECTOR_BODY, VECTOR_TS),
            Err(Refused::Malformed)
        );
    }

    #[test]
    fn basic_and_bearer_accept_only_the_configured_credentials() {
        let auth = SourceAuth::new(vec![
            Scheme::basic("mx:pa:ss").expect("basic"),
            Scheme::bearer("tok").expect("bearer"),
        ]);
        let basic = |s: &str| headers(&[("authorization", &format!("Basic {}", BASE64.encode(s)))]);
        assert_eq!(auth.check(&basic("mx:pa:ss"), b"", 0), Ok(()));
        assert_eq!(
            auth.check(&basic("mx:pa:sS"), b"", 0),
            Err(Refused::Invalid)
        );
        assert_eq!(
            auth.check(&headers(&[("authorization", "bearer tok")]), b"", 0),
            Ok(()),
            "scheme names ignore case"
        );
        assert_eq!(
            auth.check(&headers(&[("authorization", "Bearer tok2")]), b"", 0),
            Err(Refused::Invalid)
        );
        assert_eq!(
            auth.check(&headers(&[("authorization", "Digest x")]), b"", 0),
            Err(Refused::Missing)
        );
        assert_eq!(auth.check(&HeaderMap::new(), b"", 0), Err(Refused::Missing));
        assert!(
            SourceAuth::default()
                .check(&HeaderMap::new(), b"", 0)
                .is_ok(),
            "nothing configured: open"
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output_or_errors() {
        let schemes = [
            Scheme::basic("user:hunter2").expect("basic"),
            Scheme::bearer("hunter2").expect("bearer"),
            Scheme::standard_webhooks("whsec_aHVudGVyMg==").expect("sw"),
        ];
        let shown = format!("{:?}", SourceAuth::new(schemes.to_vec()));
        assert!(
            !shown.contains("hunter2") && !shown.contains("aHVudGVyMg"),
            "{shown}"
        );
        assert_eq!(
            Scheme::basic("nocolon").expect_err("bad").to_string(),
            "basic auth credentials must be USER:PASSWORD"
        );
        for half in [":", "user:", ":hunter2"] {
            assert_eq!(
                Scheme::basic(half).expect_err(half),
                ConfigError::BasicEmptyPart,
                "{half}"
            );
        }
        assert!(
            Scheme::basic("user:pa:ss").is_ok(),
            "a colon in the password"
        );
        let err = Scheme::standard_webhooks("whsec_!!!not-base64")
            .expect_err("bad")
            .to_string();
        assert!(!err.contains("not-base64"), "{err}");
    }
}
