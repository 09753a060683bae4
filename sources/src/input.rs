//! Input definitions: what a stream reads from, parsed and checked once, with credentials kept apart from URLs.
//!
//! Accepted schemes: `rtsp://`, `rtsps://` and `testsrc://` (the built-in test pattern, for example
//! `testsrc://?width=1280&height=720&fps=30&gop=60&codec=h264`). Credentials written inside an RTSP URL are moved
//! out of it into [`Credentials`], so the URL can be shown and logged. Credentials some cameras take in the query
//! (`?user=admin&password=…`) must stay in the URL the camera is asked for; `Display` and `Debug` show their
//! values as `***`, and only [`InputUrl::unredacted`] gives them (to the database and the RTSP client).

use std::fmt;

use url::Url;

use crate::frame::Codec;

/// Why an input definition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("input URL is not a valid URL: {0}")]
    BadUrl(String),
    #[error("input URL scheme {0:?} is not supported (use rtsp, rtsps or testsrc)")]
    BadScheme(String),
    #[error("input URL has no host")]
    NoHost,
    #[error("test pattern parameter {name:?} is invalid: {why}")]
    BadTestPattern { name: String, why: &'static str },
    #[error("input label must be 1 to 64 printable characters")]
    BadLabel,
}

/// RTSP lower transport requested for an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection (works through every firewall; the default).
    #[default]
    Tcp,
    /// RTP over UDP; falls back to TCP when UDP delivers nothing for a few seconds.
    Udp,
}

/// Camera credentials. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parameters of the built-in test pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPatternOptions {
    pub codec: Codec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames between keyframes.
    pub gop: u32,
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
}

impl Default for TestPatternOptions {
    fn default() -> Self {
        TestPatternOptions {
            codec: Codec::H264,
            width: 640,
            height: 360,
            fps: 25,
            gop: 50,
            bitrate_kbps: 1000,
        }
    }
}

/// Where an input reads from. Holds no user info; secrets in an RTSP URL's query are hidden by `Display` and
/// `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum InputUrl {
    Rtsp { url: Url, transport: Transport },
    TestPattern(TestPatternOptions),
}

impl InputUrl {
    /// Parses a user-supplied URL. Credentials found in an RTSP URL are removed from it and returned apart.
    pub fn parse(
        raw: &str,
        transport: Transport,
    ) -> Result<(InputUrl, Option<Credentials>), InputError> {
        let mut url = Url::parse(raw.trim()).map_err(|e| InputError::BadUrl(e.to_string()))?;
        match url.scheme() {
            "rtsp" | "rtsps" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(InputError::NoHost);
                }
                let creds = if url.username().is_empty() && url.password().is_none() {
                    None
                } else {
                    // User info is percent-encoded (RFC 3986 §3.2.1), not form-encoded: `+` stays a plus and
                    // `&` is an ordinary character.
                    let decode = |s: &str| {
                        percent_encoding::percent_decode_str(s)
                            .decode_utf8_lossy()
                            .into_owned()
                    };
                    Some(Credentials {
                        username: decode(url.username()),
                        password: decode(url.password().unwrap_or("")),
                    })
                };
                // Cannot fail for URLs with a host.
                let _ = url.set_username("");
                let _ = url.set_password(None);
                Ok((InputUrl::Rtsp { url, transport }, creds))
            }
            "testsrc" => Ok((InputUrl::TestPattern(parse_test_pattern(&url)?), None)),
            other => Err(InputError::BadScheme(other.to_owned())),
        }
    }

    /// The URL with its query secrets, as the camera must be asked for it: for the database and the RTSP client
    /// only, never for an API response or a log line (use `Display` there).
    pub fn unredacted(&self) -> String {
        match self {
            InputUrl::Rtsp { url, .. } => url.as_str().to_owned(),
            InputUrl::TestPattern(_) => self.to_string(),
        }
    }
}

/// Query keys whose values are secrets, matched as case-insensitive substrings: `user`/`password` (many
/// cameras), Foscam's `loginuse`/`loginpas`, `pwd`, `token`, `auth`, `key`, signatures.
const SECRET_QUERY_KEYS: &[&str] = &[
    "user", "usr", "pass", "pwd", "psw", "login", "token", "secret", "auth", "key", "sig", "cred",
    "account",
];

fn is_secret_key(raw_key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(raw_key)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    SECRET_QUERY_KEYS.iter().any(|s| key.contains(s))
}

/// `url` with the value of every secret query key replaced by `***`; everything else byte for byte.
fn redacted(url: &Url) -> String {
    let Some(query) = url.query() else {
        return url.as_str().to_owned();
    };
    let shown: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    format!("{base}?{}", shown.join("&"))
}

/// Shows the URL as the user could type it back, without credentials (query secrets as `***`).
impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUrl::Rtsp { url, .. } => f.write_str(&redacted(url)),
            InputUrl::TestPattern(o) => write!(
                f,
                "testsrc://?codec={}&width={}&height={}&fps={}&gop={}&bitrate_kbps={}",
                o.codec.name(),
                o.width,
                o.height,
                o.fps,
                o.gop,
                o.bitrate_kbps
            ),
        }
    }
}

/// As `Display`: no secret ever reaches a log through `{:?}`.
impl fmt::Debug for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUrl::Rtsp { url, transport } => f
                .debug_struct("Rtsp")
                .field("url", &redacted(url))
                .field("transport", transport)
                .finish(),
            InputUrl::TestPattern(o) => f.debug_tuple("TestPattern").field(o).finish(),
        }
    }
}

fn parse_test_pattern(url: &Url) -> Result<TestPatternOptions, InputError> {
    let mut o = TestPatternOptions::default();
    for (name, value) in url.query_pairs() {
        let bad = |why| InputError::BadTestPattern {
            name: name.to_string(),
            why,
        };
        let number = |lo: u32, hi: u32| -> Result<u32, InputError> {
            let n: u32 = value.parse().map_err(|_| bad("not a number"))?;
            if n < lo || n > hi {
                return Err(bad("out of range"));
            }
            Ok(n)
        };
        match &*name {
            "codec" => {
                o.codec = Codec::from_name(&value).ok_or_else(|| bad("must be h264 or h265"))?
            }
            // Even sizes: 4:2:0 encoders refuse odd ones.
            "width" => o.width = number(16, 3840)? & !1,
            "height" => o.height = number(16, 2160)? & !1,
            "fps" => o.fps = number(1, 120)?,
            "gop" => o.gop = number(1, 1000)?,
            "bitrate_kbps" => o.bitrate_kbps = number(50, 50_000)?,
            _ => return Err(bad("unknown parameter")),
        }
    }
    Ok(o)
}

/// One input of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    pub label: String,
    pub url: InputUrl,
    /// Lower wins.
    pub priority: i32,
}

/// Checks an input label: 1 to 64 characters, no control characters.
pub fn check_label(label: &str) -> Result<(), InputError> {
    let n = label.chars().count();
    if n == 0 || n > 64 || label.chars().any(char::is_control) {
        return Err(InputError::BadLabel);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_move_out_of_url() {
        let (u, c) =
            InputUrl::parse("rtsp://admin:p%40ss@10.0.0.5:554/stream1", Transport::Tcp).unwrap();
        assert_eq!(u.to_string(), "rtsp://10.0.0.5:554/stream1");
        let c = c.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn userinfo_is_percent_decoded_not_form_decoded() {
        // `+` stays a plus, `&` and a raw `%` that starts no escape are ordinary, `%25`/`%40` decode, and the
        // last `@` ends the user info.
        for (raw, want) in [
            ("rtsp://u:p+ss@10.0.0.5/s", "p+ss"),
            ("rtsp://u:a&b=c@10.0.0.5/s", "a&b=c"),
            ("rtsp://u:50%25off@10.0.0.5/s", "50%off"),
            ("rtsp://u:100%@10.0.0.5/s", "100%"),
            ("rtsp://u:p@ss@10.0.0.5/s", "p@ss"),
            ("rtsp://u:%2B%26%25%40@10.0.0.5/s", "+&%@"),
        ] {
            let (u, c) = InputUrl::parse(raw, Transport::Tcp).unwrap();
            assert_eq!(c.unwrap().password, want, "{raw}");
            assert_eq!(u.to_string(), "rtsp://10.0.0.5/s");
        }
        let (_, c) = InputUrl::parse("rtsp://first+last:x@10.0.0.5/s", Transport::Tcp).unwrap();
        assert_eq!(c.unwrap().username, "first+last");
    }

    #[test]
    fn query_secrets_are_hidden_but_kept() {
        let raw = "rtsp://10.0.0.5:554/live?channel=1&user=admin&password=hunter2&LoginPas=x%26y&subtype=0";
        let (u, c) = InputUrl::parse(raw, Transport::Tcp).unwrap();
        assert!(c.is_none());
        let shown = u.to_string();
        assert_eq!(
            shown,
            "rtsp://10.0.0.5:554/live?channel=1&user=***&password=***&LoginPas=***&subtype=0"
        );
        let debug = format!("{u:?}");
        for secret in ["admin", "hunter2", "x%26y"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert_eq!(u.unredacted(), raw, "the camera still gets them");
        assert_eq!(
            InputUrl::parse(&u.unredacted(), Transport::Tcp).unwrap().0,
            u
        );
        let (plain, _) = InputUrl::parse("rtsp://10.0.0.5/cam?channel=2", Transport::Tcp).unwrap();
        assert_eq!(plain.to_string(), "rtsp://10.0.0.5/cam?channel=2");
    }

    #[test]
    fn rejects_bad_schemes_and_urls() {
        assert_eq!(
            InputUrl::parse("http://cam/x", Transport::Tcp).unwrap_err(),
            InputError::BadScheme("http".into())
        );
        assert!(matches!(
            InputUrl::parse("not a url", Transport::Tcp),
            Err(InputError::BadUrl(_))
        ));
        assert!(matches!(
            InputUrl::parse("rtsp://", Transport::Tcp),
            Err(InputError::BadUrl(_) | InputError::NoHost)
        ));
    }

    #[test]
    fn test_pattern_parameters() {
        let (u, c) = InputUrl::parse(
            "testsrc://?width=1280&height=720&fps=30&gop=60&codec=h265",
            Transport::Tcp,
        )
        .unwrap();
        assert!(c.is_none());
        let InputUrl::TestPattern(o) = &u else {
            panic!()
        };
        assert_eq!(
            (o.width, o.height, o.fps, o.gop, o.codec),
            (1280, 720, 30, 60, Codec::H265)
        );
        assert_eq!(
            InputUrl::parse(&u.to_string(), Transport::Tcp).unwrap().0,
            u
        );
        assert!(InputUrl::parse("testsrc://?fps=0", Transport::Tcp).is_err());
        assert!(InputUrl::parse("testsrc://?color=red", Transport::Tcp).is_err());
        assert!(InputUrl::parse("testsrc://", Transport::Tcp).is_ok());
    }
}
