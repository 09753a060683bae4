//! `application/trickle-ice-sdpfrag` (RFC 8840 §9), the body of a WHEP `PATCH`: the ICE credentials the
//! candidates belong to, then per media section its `a=mid` and `a=candidate` lines, and possibly
//! `a=end-of-candidates`.

/// Most candidates one fragment may carry; a browser sends a handful.
pub const MAX_CANDIDATES: usize = 64;

/// One remote candidate, in the shape WebRTC stacks take (`RTCIceCandidateInit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCandidate {
    /// `candidate:...` (the attribute without `a=`).
    pub candidate: String,
    pub mid: Option<String>,
    pub mline_index: u16,
}

/// A parsed fragment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrickleFragment {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub candidates: Vec<RemoteCandidate>,
    pub end_of_candidates: bool,
}

/// Why a fragment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrickleError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("more than {MAX_CANDIDATES} candidates in one fragment")]
    TooManyCandidates,
}

/// Parses a fragment. Attributes other than the ones above are ignored, as RFC 8840 allows.
pub fn parse(body: &str) -> Result<TrickleFragment, TrickleError> {
    let mut frag = TrickleFragment::default();
    let mut mline: Option<u16> = None;
    let mut mid: Option<String> = None;
    for (i, raw) in body.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let malformed = |reason| TrickleError::Malformed {
            line: i + 1,
            reason,
        };
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |m| m.saturating_add(1)));
            mid = None;
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            return Err(malformed("expected an `a=` or `m=` line"));
        };
        if let Some(v) = attr.strip_prefix("ice-ufrag:") {
            frag.ice_ufrag = Some(v.trim().to_owned());
        } else if let Some(v) = attr.strip_prefix("ice-pwd:") {
            frag.ice_pwd = Some(v.trim().to_owned());
        } else if let Some(v) = attr.strip_prefix("mid:") {
            mid = Some(v.trim().to_owned());
        } else if attr.starts_with("candidate:") {
            // foundation component transport priority address port "typ" type
            if attr.split_ascii_whitespace().count() < 8 {
                return Err(malformed("a candidate needs at least 8 fields"));
            }
            if mline.is_none() {
                return Err(malformed("a candidate before any `m=` line"));
            }
            if frag.candidates.len() == MAX_CANDIDATES {
                return Err(TrickleError::TooManyCandidates);
            }
            frag.candidates.push(RemoteCandidate {
                candidate: attr.to_owned(),
                mid: mid.clone(),
                mline_index: mline.unwrap_or(0),
            });
        } else if attr == "end-of-candidates" {
            frag.end_of_candidates = true;
        }
    }
    Ok(frag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_8840_example_shape() {
        let body = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
            a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
            a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0\r\n\
            a=end-of-candidates\r\n";
        let f = parse(body).unwrap();
        assert_eq!(f.ice_ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.ice_pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert!(f.end_of_candidates);
        assert_eq!(f.candidates.len(), 2);
        assert_eq!(f.candidates[0].mid.as_deref(), Some("0"));
        assert_eq!(f.candidates[0].mline_index, 0);
        assert!(f.candidates[1]
            .candidate
            .starts_with("candidate:3471623853 1 udp"));
    }

    #[test]
    fn candidates_follow_their_media_section() {
        let body = "m=audio 9 RTP/AVP 0\na=mid:a\nm=video 9 RTP/AVP 0\na=mid:v\n\
            a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\n";
        let f = parse(body).unwrap();
        assert_eq!(f.candidates[0].mline_index, 1);
        assert_eq!(f.candidates[0].mid.as_deref(), Some("v"));
        assert!(!f.end_of_candidates);
    }

    #[test]
    fn refuses_garbage_and_floods() {
        assert!(matches!(
            parse("hello"),
            Err(TrickleError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            parse("m=video 9 RTP/AVP 0\na=candidate:1 1 udp\n"),
            Err(TrickleError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse("a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\n"),
            Err(TrickleError::Malformed { line: 1, .. })
        ));
        let flood = format!(
            "m=video 9 RTP/AVP 0\n{}",
            "a=candidate:1 1 udp 1 10.0.0.1 5000 typ host\n".repeat(MAX_CANDIDATES + 1)
        );
        assert_eq!(parse(&flood), Err(TrickleError::TooManyCandidates));
        assert_eq!(parse("").unwrap(), TrickleFragment::default());
    }
}
