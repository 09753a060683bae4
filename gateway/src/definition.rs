//! A stream's definition — its id, inputs, credentials and settings — checked once when it enters the gateway.
//!
//! API bodies ([`CreateStream`], [`PatchStream`]) become a [`StreamDefinition`] here, or a [`DefinitionError`]
//! saying what is wrong. Credentials written in an input URL are moved out of it (`sources::InputUrl::parse`), so
//! the definition's URLs can be stored, shown and logged as they are.

use std::collections::HashSet;
use std::time::Duration;

use api_models::{
    CreateStream, InputDto, InputView, PatchStream, RetentionDto, TransportDto,
    DEFAULT_RESTART_INTERVAL_SECS,
};
use sources::input::check_label;
use sources::{Credentials, IngestOptions, InputError, InputSpec, InputUrl, Transport};

/// Inputs one stream may have.
pub const MAX_INPUTS: usize = 16;
/// Longest input URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest user name or password accepted, in bytes.
pub const MAX_CREDENTIAL_BYTES: usize = 256;
/// Range of `restart_interval_secs`.
pub const RESTART_INTERVAL_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

/// Why a stream definition was refused. Messages never quote a URL (it could hold credentials).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DefinitionError {
    #[error("source_id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    BadSourceId,
    #[error("a stream needs at least one input in rtsp_inputs")]
    NoInputs,
    #[error("a stream has at most {MAX_INPUTS} inputs")]
    TooManyInputs,
    #[error("rtsp_inputs[{index}]: {source}")]
    Input {
        index: usize,
        #[source]
        source: InputError,
    },
    #[error("rtsp_inputs[{0}]: URL longer than {MAX_URL_BYTES} bytes")]
    UrlTooLong(usize),
    #[error("rtsp_inputs[{0}]: label already used by another input of this stream")]
    DuplicateLabel(usize),
    #[error(
        "the input URLs carry different credentials; give `username` and `password` fields instead"
    )]
    ConflictingCredentials,
    #[error("username and password are limited to {MAX_CREDENTIAL_BYTES} bytes")]
    CredentialsTooLong,
    #[error("restart_interval_secs must be 1 to 86400")]
    BadRestartInterval,
    #[error("retention: max_age_secs must be at least 60 and max_bytes at least 1048576")]
    BadRetention,
}

/// A stream as the gateway keeps it. URLs carry no credentials; `credentials` holds them apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDefinition {
    pub source_id: String,
    /// In the order given; the ingest picks by `priority`.
    pub inputs: Vec<InputSpec>,
    pub credentials: Option<Credentials>,
    pub should_record: bool,
    /// After a fail-over, how often the higher-priority inputs are tried again.
    pub restart_interval_secs: u64,
    /// When the stream was registered, epoch milliseconds.
    pub created_ms: i64,
    /// Limits on what is kept of its recording.
    pub retention: RetentionDto,
}

fn check_retention(r: &RetentionDto) -> Result<(), DefinitionError> {
    let age_ok = r.max_age_secs.is_none_or(|a| a >= 60);
    let bytes_ok = r.max_bytes.is_none_or(|b| b >= 1 << 20);
    (age_ok && bytes_ok)
        .then_some(())
        .ok_or(DefinitionError::BadRetention)
}

/// Checks a stream id: 1 to 64 characters of `[A-Za-z0-9_-]` (safe in URLs, file names and logs).
pub fn check_source_id(id: &str) -> Result<(), DefinitionError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(()).ok_or(DefinitionError::BadSourceId)
}

impl StreamDefinition {
    /// Checks a `POST /streams` body.
    pub fn from_create(
        req: CreateStream,
        created_ms: i64,
    ) -> Result<StreamDefinition, DefinitionError> {
        check_source_id(&req.source_id)?;
        let (inputs, url_credentials) = parse_inputs(&req.rtsp_inputs)?;
        let credentials = override_credentials(url_credentials, req.username, req.password);
        check_credentials(&credentials)?;
        let restart_interval_secs = req
            .restart_interval_secs
            .unwrap_or(DEFAULT_RESTART_INTERVAL_SECS);
        check_restart_interval(restart_interval_secs)?;
        let retention = req.retention.unwrap_or_default();
        check_retention(&retention)?;
        Ok(StreamDefinition {
            source_id: req.source_id,
            inputs,
            credentials,
            should_record: req.should_record,
            restart_interval_secs,
            created_ms,
            retention,
        })
    }

    /// Applies a `PATCH /streams/{id}` body (the credentials rule is documented on [`PatchStream`]).
    pub fn patched(&self, patch: PatchStream) -> Result<StreamDefinition, DefinitionError> {
        let mut next = self.clone();
        if let Some(dtos) = &patch.rtsp_inputs {
            let (inputs, url_credentials) = parse_inputs(dtos)?;
            next.inputs = inputs;
            if url_credentials.is_some() {
                next.credentials = url_credentials;
            }
        }
        next.credentials = patch_credentials(next.credentials, patch.username, patch.password);
        check_credentials(&next.credentials)?;
        if let Some(record) = patch.should_record {
            next.should_record = record;
        }
        if let Some(secs) = patch.restart_interval_secs {
            check_restart_interval(secs)?;
            next.restart_interval_secs = secs;
        }
        if let Some(retention) = patch.retention {
            check_retention(&retention)?;
            next.retention = retention;
        }
        Ok(next)
    }

    /// True when `other` needs the same ingest (inputs, credentials, timings): no restart on a change of the rest.
    pub fn same_ingest(&self, other: &StreamDefinition) -> bool {
        self.inputs == other.inputs
            && self.credentials == other.credentials
            && self.restart_interval_secs == other.restart_interval_secs
    }

    /// Options for `sources::IngestHandle::spawn`.
    pub fn ingest_options(&self, watchdog: Duration) -> IngestOptions {
        IngestOptions {
            inputs: self.inputs.clone(),
            credentials: self.credentials.clone(),
            watchdog,
            retry_primary_after: Duration::from_secs(self.restart_interval_secs),
            ..IngestOptions::default()
        }
    }

    /// The inputs as the API shows them, lowest priority number first.
    pub fn input_views(&self) -> Vec<InputView> {
        let mut views: Vec<InputView> = self
            .inputs
            .iter()
            .map(|i| InputView {
                label: i.label.clone(),
                url: i.url.to_string(),
                priority: i.priority,
                transport: transport_dto(&i.url),
            })
            .collect();
        views.sort_by_key(|v| v.priority);
        views
    }
}

/// The transport an input uses, as the API names it (`tcp` for the test pattern).
pub fn transport_dto(url: &InputUrl) -> TransportDto {
    match url {
        InputUrl::Rtsp {
            transport: Transport::Udp,
            ..
        } => TransportDto::Udp,
        _ => TransportDto::Tcp,
    }
}

/// Parses and checks inputs; returns them with the credentials found in their URLs (all equal, or an error).
fn parse_inputs(
    dtos: &[InputDto],
) -> Result<(Vec<InputSpec>, Option<Credentials>), DefinitionError> {
    if dtos.is_empty() {
        return Err(DefinitionError::NoInputs);
    }
    if dtos.len() > MAX_INPUTS {
        return Err(DefinitionError::TooManyInputs);
    }
    let mut labels = HashSet::new();
    let mut found: Option<Credentials> = None;
    let mut inputs = Vec::with_capacity(dtos.len());
    for (index, dto) in dtos.iter().enumerate() {
        let input_err = |source| DefinitionError::Input { index, source };
        check_label(&dto.label).map_err(input_err)?;
        if !labels.insert(dto.label.as_str()) {
            return Err(DefinitionError::DuplicateLabel(index));
        }
        if dto.url.len() > MAX_URL_BYTES {
            return Err(DefinitionError::UrlTooLong(index));
        }
        let transport = match dto.transport {
            TransportDto::Tcp => Transport::Tcp,
            TransportDto::Udp => Transport::Udp,
        };
        let (url, credentials) = InputUrl::parse(&dto.url, transport).map_err(input_err)?;
        if let Some(c) = credentials {
            match &found {
                Some(f) if *f != c => return Err(DefinitionError::ConflictingCredentials),
                _ => found = Some(c),
            }
        }
        inputs.push(InputSpec {
            label: dto.label.clone(),
            url,
            priority: dto.priority,
        });
    }
    Ok((inputs, found))
}

/// Create rule: explicit fields replace the matching part of the URL's credentials; nothing at all means none.
fn override_credentials(
    base: Option<Credentials>,
    username: Option<String>,
    password: Option<String>,
) -> Option<Credentials> {
    if username.is_none() && password.is_none() {
        return base;
    }
    let (u0, p0) = base.map_or_else(Default::default, |c| (c.username, c.password));
    let c = Credentials {
        username: username.unwrap_or(u0),
        password: password.unwrap_or(p0),
    };
    (!c.username.is_empty() || !c.password.is_empty()).then_some(c)
}

/// What a PATCH field asks for.
enum Field {
    Keep,
    Clear,
    Set(String),
}

impl From<Option<Option<String>>> for Field {
    fn from(f: Option<Option<String>>) -> Field {
        match f {
            None => Field::Keep,
            Some(None) => Field::Clear,
            Some(Some(s)) if s.is_empty() => Field::Clear,
            Some(Some(s)) => Field::Set(s),
        }
    }
}

/// PATCH rule, documented on [`PatchStream`].
fn patch_credentials(
    current: Option<Credentials>,
    username: Option<Option<String>>,
    password: Option<Option<String>>,
) -> Option<Credentials> {
    let (u0, p0) = current
        .clone()
        .map_or_else(Default::default, |c| (c.username, c.password));
    match (Field::from(username), Field::from(password)) {
        (Field::Keep, Field::Keep) => current,
        (Field::Set(username), Field::Clear) => Some(Credentials {
            username,
            password: String::new(),
        }),
        (Field::Clear, _) | (_, Field::Clear) => None,
        (Field::Set(username), Field::Keep) => Some(Credentials {
            username,
            password: p0,
        }),
        (Field::Keep, Field::Set(password)) => Some(Credentials {
            username: u0,
            password,
        }),
        (Field::Set(username), Field::Set(password)) => Some(Credentials { username, password }),
    }
}

fn check_credentials(c: &Option<Credentials>) -> Result<(), DefinitionError> {
    match c {
        Some(c)
            if c.username.len() > MAX_CREDENTIAL_BYTES
                || c.password.len() > MAX_CREDENTIAL_BYTES =>
        {
            Err(DefinitionError::CredentialsTooLong)
        }
        _ => Ok(()),
    }
}

fn check_restart_interval(secs: u64) -> Result<(), DefinitionError> {
    RESTART_INTERVAL_SECS
        .contains(&secs)
        .then_some(())
        .ok_or(DefinitionError::BadRestartInterval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(label: &str, url: &str) -> InputDto {
        InputDto {
            label: label.into(),
            url: url.into(),
            priority: 0,
            transport: TransportDto::Tcp,
        }
    }

    fn create(inputs: Vec<InputDto>) -> CreateStream {
        CreateStream {
            source_id: "cam-1".into(),
            rtsp_inputs: inputs,
            username: None,
            password: None,
            should_record: false,
            restart_interval_secs: None,
            retention: None,
        }
    }

    fn creds(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    #[test]
    fn source_ids() {
        for ok in ["a", "cam_1-B", &"x".repeat(64)] {
            assert_eq!(check_source_id(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/b", "../x", "a b", "é", &"x".repeat(65)] {
            assert_eq!(
                check_source_id(bad),
                Err(DefinitionError::BadSourceId),
                "{bad}"
            );
        }
    }

    #[test]
    fn credentials_leave_the_url_and_fields_win() {
        let d = StreamDefinition::from_create(
            create(vec![input("m", "rtsp://user:secret@10.0.0.1/x")]),
            0,
        )
        .unwrap();
        assert_eq!(d.credentials, creds("user", "secret"));
        assert_eq!(d.input_views()[0].url, "rtsp://10.0.0.1/x");
        let mut req = create(vec![input("m", "rtsp://user:secret@10.0.0.1/x")]);
        req.password = Some("other".into());
        let d = StreamDefinition::from_create(req, 0).unwrap();
        assert_eq!(d.credentials, creds("user", "other"));
    }

    #[test]
    fn refuses_bad_inputs() {
        let err = |inputs| StreamDefinition::from_create(create(inputs), 0).unwrap_err();
        assert_eq!(err(vec![]), DefinitionError::NoInputs);
        assert!(matches!(
            err(vec![input("m", "ftp://h/x")]),
            DefinitionError::Input { index: 0, .. }
        ));
        assert_eq!(
            err(vec![input("m", "rtsp://h/x"), input("m", "rtsp://h/y")]),
            DefinitionError::DuplicateLabel(1)
        );
        assert_eq!(
            err((0..17)
                .map(|i| input(&i.to_string(), "rtsp://h/x"))
                .collect()),
            DefinitionError::TooManyInputs
        );
        assert_eq!(
            err(vec![
                input("a", "rtsp://u:p@h/x"),
                input("b", "rtsp://u:q@h/y")
            ]),
            DefinitionError::ConflictingCredentials
        );
        let mut req = create(vec![input("m", "rtsp://h/x")]);
        req.restart_interval_secs = Some(0);
        assert_eq!(
            StreamDefinition::from_create(req, 0).unwrap_err(),
            DefinitionError::BadRestartInterval
        );
    }

    #[test]
    fn patch_credentials_rule() {
        let cur = creds("u", "p");
        let s = |v: &str| Some(Some(v.to_owned()));
        assert_eq!(patch_credentials(cur.clone(), None, None), cur);
        assert_eq!(patch_credentials(cur.clone(), None, Some(None)), None);
        assert_eq!(patch_credentials(cur.clone(), None, s("")), None);
        assert_eq!(patch_credentials(cur.clone(), Some(None), None), None);
        assert_eq!(
            patch_credentials(cur.clone(), s("v"), s("")),
            creds("v", "")
        );
        assert_eq!(
            patch_credentials(cur.clone(), s("v"), None),
            creds("v", "p")
        );
        assert_eq!(
            patch_credentials(cur.clone(), None, s("q")),
            creds("u", "q")
        );
        assert_eq!(patch_credentials(None, None, s("q")), creds("", "q"));
    }

    #[test]
    fn patch_keeps_what_is_absent_and_knows_when_ingest_changes() {
        let d = StreamDefinition::from_create(
            create(vec![input("m", "testsrc://?width=320&height=240")]),
            5,
        )
        .unwrap();
        let p = d
            .patched(PatchStream {
                should_record: Some(true),
                ..Default::default()
            })
            .unwrap();
        assert!(p.should_record && p.same_ingest(&d) && p.created_ms == 5);
        let p = d
            .patched(PatchStream {
                rtsp_inputs: Some(vec![input("n", "rtsp://a:b@h/x")]),
                ..Default::default()
            })
            .unwrap();
        assert!(!p.same_ingest(&d));
        assert_eq!(p.credentials, creds("a", "b"));
        assert_eq!(
            p.ingest_options(Duration::from_secs(3)).retry_primary_after,
            Duration::from_secs(60)
        );
    }
}
