//! The management API's stream bodies: JSON as `POST /streams` and `PATCH /streams/{id}` receive it, read into
//! the `api-models` DTOs and checked by `gateway::definition`. Input: the create body, a NUL byte, the patch
//! body.
//!
//! Checks: nothing panics; an accepted definition keeps every rule the checks promise (id, input count and
//! labels, lengths, ranges) and holds no credentials in any URL; its URLs read back to themselves; an empty patch
//! changes nothing; a patched definition keeps the same rules.
#![no_main]

use std::collections::HashSet;

use api_models::{CreateStream, PatchStream};
use gateway::definition::{
    check_source_id, StreamDefinition, MAX_CREDENTIAL_BYTES, MAX_INPUTS, RESTART_INTERVAL_SECS,
};
use libfuzzer_sys::fuzz_target;
use sources::{InputUrl, Transport};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let create = parts.next().unwrap_or_default();
    let patch = parts.next().unwrap_or_default();
    let Ok(req) = serde_json::from_slice::<CreateStream>(create) else {
        return;
    };
    let Ok(def) = StreamDefinition::from_create(req, 1_795_000_000_000) else {
        return;
    };
    check(&def);
    assert_eq!(def.patched(PatchStream::default()).as_ref(), Ok(&def));
    if let Ok(patch) = serde_json::from_slice::<PatchStream>(patch) {
        if let Ok(next) = def.patched(patch) {
            check(&next);
            assert_eq!(next.source_id, def.source_id);
        }
    }
});

fn check(def: &StreamDefinition) {
    assert!(check_source_id(&def.source_id).is_ok());
    assert!((1..=MAX_INPUTS).contains(&def.inputs.len()));
    let labels: HashSet<&str> = def.inputs.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(labels.len(), def.inputs.len(), "duplicate labels");
    assert!(RESTART_INTERVAL_SECS.contains(&def.restart_interval_secs));
    assert!(def.retention.max_age_secs.is_none_or(|a| a >= 60));
    assert!(def.retention.max_bytes.is_none_or(|b| b >= 1 << 20));
    if let Some(c) = &def.credentials {
        assert!(
            c.username.len() <= MAX_CREDENTIAL_BYTES && c.password.len() <= MAX_CREDENTIAL_BYTES
        );
        assert!(
            !c.username.is_empty() || !c.password.is_empty(),
            "empty credentials kept"
        );
        if c.password != "<redacted>" {
            assert!(!format!("{def:?}").contains(&format!("password: {:?}", c.password)));
        }
    }
    for input in &def.inputs {
        let transport = match &input.url {
            InputUrl::Rtsp { url, transport } => {
                assert!(
                    url.username().is_empty() && url.password().is_none(),
                    "credentials left in {url}"
                );
                *transport
            }
            InputUrl::TestPattern(_) => Transport::Tcp,
        };
        // What the API shows and the store keeps reads back to the same input, with nothing to move out. (As
        // text: the url crate may tell apart two URLs that print the same, such as "rtsps://s?#" read twice.)
        let shown = input.url.to_string();
        match InputUrl::parse(&shown, transport) {
            Ok((again, None)) => assert_eq!(again.to_string(), shown),
            other => panic!("{shown} read back as {other:?}"),
        }
    }
    // The API lists the inputs by priority.
    let views = def.input_views();
    assert_eq!(views.len(), def.inputs.len());
    assert!(views.is_sorted_by_key(|v| v.priority));
    for view in &views {
        let input = def.inputs.iter().find(|i| i.label == view.label).unwrap();
        assert_eq!(view.url, input.url.to_string());
    }
}
