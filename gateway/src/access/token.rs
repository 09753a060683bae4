//! Viewer tokens, sans-IO: minting and checking signed, expiring, stream-scoped grants. No clock is read here;
//! the caller passes `now_ms` (wall-clock epoch milliseconds), so expiry is tested in simulated time.
//!
//! Format (docs/decisions/0006-access-control.md): `v1.<stream>.<expires_ms>.<rights>.<mac>` where `<rights>`
//! is `l` (live), `ld` (live + DVR), `le` (live + export) or `lde`, and `<mac>` is the unpadded base64url
//! HMAC-SHA256 of everything before the last dot under the gateway's token key. Stream ids are
//! `[A-Za-z0-9_-]{1,64}`, so the dots are unambiguous and the token is safe in a URL query as it is.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

/// Version prefix of the one format spoken today.
const VERSION: &str = "v1";
/// Longest token looked at; anything longer is refused before any work.
const MAX_TOKEN_LEN: usize = 256;

/// What a viewer token lets its bearer do, on one stream, until it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewerClaims {
    /// The one stream the token opens.
    pub stream: String,
    /// Wall-clock epoch milliseconds after which the token is refused.
    pub expires_ms: i64,
    /// Play from the recording: start in it, seek, pause, change speed; list the recordings.
    pub dvr: bool,
    /// Download MP4 exports of the recording.
    pub export: bool,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of this gateway: wrong shape, unknown version, or a signature that does not match.
    #[error("the token is not valid")]
    Invalid,
    /// Signed by this gateway, but its time is over.
    #[error("the token expired at {expires_ms} (epoch ms)")]
    Expired { expires_ms: i64 },
}

/// The HMAC-SHA256 key that signs viewer tokens. `Debug` never prints it.
pub struct TokenKey(hmac::Key);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// A key from secret bytes (at least 32 of them, from a random source).
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Signs `claims` into a token string.
    pub fn mint(&self, claims: &ViewerClaims) -> String {
        let body = format!(
            "{VERSION}.{}.{}.{}",
            claims.stream,
            claims.expires_ms,
            rights_text(claims.dvr, claims.export)
        );
        let tag = hmac::sign(&self.0, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks a token's signature, then its expiry against `now_ms`, and answers what it grants. The signature
    /// comparison takes the same time however many bytes match (`ring::hmac::verify`).
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<ViewerClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let (body, mac) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Invalid)?;
        hmac::verify(&self.0, body.as_bytes(), &tag).map_err(|_| TokenError::Invalid)?;
        // Signed by us: the fields were written by `mint`, but parse them strictly all the same.
        let mut parts = body.split('.');
        let (Some(VERSION), Some(stream), Some(expires), Some(rights), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Invalid);
        };
        let expires_ms: i64 = expires.parse().map_err(|_| TokenError::Invalid)?;
        let (dvr, export) = match rights {
            "l" => (false, false),
            "ld" => (true, false),
            "le" => (false, true),
            "lde" => (true, true),
            _ => return Err(TokenError::Invalid),
        };
        if now_ms >= expires_ms {
            return Err(TokenError::Expired { expires_ms });
        }
        Ok(ViewerClaims {
            stream: stream.to_owned(),
            expires_ms,
            dvr,
            export,
        })
    }
}

fn rights_text(dvr: bool, export: bool) -> &'static str {
    match (dvr, export) {
        (false, false) => "l",
        (true, false) => "ld",
        (false, true) => "le",
        (true, true) => "lde",
    }
}

/// Compares two secrets without an early exit on the first differing byte, so timing does not reveal a prefix
/// (the admin token is compared this way).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_000_000_000;

    fn key() -> TokenKey {
        TokenKey::new(&[7u8; 32])
    }

    fn claims(dvr: bool, export: bool) -> ViewerClaims {
        ViewerClaims {
            stream: "porch-1".into(),
            expires_ms: T0 + 60_000,
            dvr,
            export,
        }
    }

    #[test]
    fn round_trip_keeps_every_right() {
        for (dvr, export) in [(false, false), (true, false), (false, true), (true, true)] {
            let c = claims(dvr, export);
            let t = key().mint(&c);
            assert!(t.starts_with("v1.porch-1."), "{t}");
            assert_eq!(key().verify(&t, T0), Ok(c));
        }
    }

    #[test]
    fn expires_in_simulated_time() {
        let t = key().mint(&claims(false, false));
        assert!(key().verify(&t, T0 + 59_999).is_ok());
        assert_eq!(
            key().verify(&t, T0 + 60_000),
            Err(TokenError::Expired {
                expires_ms: T0 + 60_000
            })
        );
    }

    #[test]
    fn another_key_or_any_change_is_refused() {
        let t = key().mint(&claims(false, false));
        assert_eq!(
            TokenKey::new(&[8u8; 32]).verify(&t, T0),
            Err(TokenError::Invalid)
        );
        // Widening the rights, renaming the stream or stretching the expiry breaks the signature.
        let forged = [
            t.replacen(".l.", ".lde.", 1),
            t.replacen("porch-1", "porch-2", 1),
            t.replacen(&(T0 + 60_000).to_string(), &(T0 + 600_000).to_string(), 1),
        ];
        for f in forged {
            assert_ne!(f, t);
            assert_eq!(key().verify(&f, T0), Err(TokenError::Invalid), "{f}");
        }
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(key().verify(&flipped, T0), Err(TokenError::Invalid));
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for g in [
            "",
            ".",
            "v1",
            "v1.a.b.c.d",
            "v1....",
            "Bearer x",
            "v2.porch.1.l.AAAA",
            &"x".repeat(10_000),
        ] {
            assert_eq!(key().verify(g, T0), Err(TokenError::Invalid), "{g:?}");
        }
    }

    #[test]
    fn signed_but_malformed_fields_are_invalid() {
        // A body the key signed that `mint` would never write (a bad expiry, unknown rights, an extra field).
        for body in [
            "v1.cam.soon.l",
            "v1.cam.1.x",
            "v1.cam.1.l.extra",
            "v2.cam.1.l",
        ] {
            let tag = hmac::sign(&key().0, body.as_bytes());
            let t = format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
            assert_eq!(key().verify(&t, 0), Err(TokenError::Invalid), "{body}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", key()), "TokenKey(<redacted>)");
    }

    #[test]
    fn compares_in_constant_time_shape() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
