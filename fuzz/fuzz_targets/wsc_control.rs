//! WSC-RTP control input (WSC-RTP-PROTOCOL.md §2, §3): UDP control datagrams (proof, keep-alive, ack), the
//! session token's hex form, and the WebSocket JSON messages in both directions. Input: one selector byte, then
//! the datagram or text.
//!
//! Checks: nothing panics; whatever parses is exactly what the builder/serializer writes back (a datagram
//! byte for byte, a token up to hex case, a message once written); a client message obeys the limits
//! the parser promises; a refused one carries one of the documented error codes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use publishers::wsc::datagram::{
    build_ack, build_proof, is_control, parse_ack, parse_proof, token_eq, token_from_hex,
    token_to_hex,
};
use publishers::wsc::messages::{parse_client, ClientMessage, ServerMessage, MAX_NACK_SEQS};
use serde_json::Value;

/// The gateway's limit on a client message (the session's `max_message_bytes`).
const MAX_LEN: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => datagram(rest),
        1 => client_message(rest),
        _ => server_message(rest),
    }
});

fn datagram(d: &[u8]) {
    if let Some(p) = parse_proof(d) {
        assert!(is_control(d));
        assert_eq!(&build_proof(p.kind, &p.token, p.echo.as_ref())[..], d);
    }
    if let Some(ack) = parse_ack(d) {
        assert!(is_control(d));
        // Bytes 6 and 7 are reserved and ignored by the reader.
        let built = build_ack(ack.kind, &ack.nonce);
        assert_eq!((&built[..6], &built[8..]), (&d[..6], &d[8..]));
    }
    if let Ok(text) = std::str::from_utf8(d) {
        if let Some(token) = token_from_hex(text) {
            assert!(token_to_hex(&token).eq_ignore_ascii_case(text));
            assert!(token_eq(&token, &token));
        }
    }
}

fn client_message(d: &[u8]) {
    let Ok(text) = std::str::from_utf8(d) else {
        return;
    };
    match parse_client(text, MAX_LEN) {
        Ok(msg) => {
            assert!(text.len() <= MAX_LEN);
            if let ClientMessage::Nack { seqs } = &msg {
                assert!(seqs.len() <= MAX_NACK_SEQS);
            }
            let text = serde_json::to_string(&msg).unwrap();
            let again = parse_client(&text, usize::MAX).unwrap();
            assert_same(&again, &msg, &text);
        }
        Err(e) => assert!(matches!(
            e.code(),
            "bad_json" | "unknown_type" | "bad_field" | "too_large"
        )),
    }
}

/// What a client reads: every message the server could have sent survives its own serialization.
fn server_message(d: &[u8]) {
    if let Ok(msg) = serde_json::from_slice::<ServerMessage>(d) {
        let text = msg.to_text();
        let again = serde_json::from_str::<ServerMessage>(&text).unwrap();
        assert_same(&again, &msg, &text);
    }
}

/// Equal, except that numbers may differ in their last bit: serde_json (without its `float_roundtrip` feature)
/// may read a float of 17 significant digits as its neighbour.
fn assert_same<T: serde::Serialize>(a: &T, b: &T, text: &str) {
    let (a, b) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    assert!(same(&a, &b), "{text} read back as {a}, not {b}");
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
