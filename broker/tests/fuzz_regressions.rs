//! The broker_requests fuzz target's seeds and the inputs it found a fault
//! with, replayed through the same entry point: each must return, with the
//! broker still answering.

use karnak_broker::fuzz;
use karnak_protocol::fuzz::replay;

#[test]
fn every_seed_and_kept_input_of_broker_requests() {
    let seeds =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/broker_requests");
    let (mut n, mut answered) = (0, 0);
    for entry in std::fs::read_dir(&seeds).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        if !fuzz::answers(&input).is_empty() {
            answered += 1;
        }
        n += 1;
    }
    assert!(n >= 50, "{n} seeds in {}", seeds.display());
    // Captured clients' requests: nearly all are answered.
    assert!(answered * 10 >= n * 9, "{answered} of {n} seeds answered");
    replay("broker_requests", fuzz::requests);
}

/// A size-prefixed request with a v1 header (client id "t").
fn frame(key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&correlation.to_be_bytes());
    f.extend_from_slice(&1i16.to_be_bytes());
    f.push(b't');
    f.extend_from_slice(body);
    let mut out = (f.len() as u32).to_be_bytes().to_vec();
    out.extend(f);
    out
}

fn plain_login(user: &str, password: &str) -> Vec<u8> {
    let mut mechanism = 5i16.to_be_bytes().to_vec();
    mechanism.extend_from_slice(b"PLAIN");
    let token = format!("\0{user}\0{password}");
    let mut auth = (token.len() as i32).to_be_bytes().to_vec();
    auth.extend_from_slice(token.as_bytes());
    let mut out = vec![1u8]; // the SASL broker
    out.extend(frame(17, 1, 1, &mechanism));
    out.extend(frame(36, 1, 2, &auth));
    out
}

/// The error code of the answer with `correlation` id in a stream of
/// size-prefixed responses (header v0: the error code follows the id).
fn error_code(answers: &[u8], correlation: i32) -> Option<i16> {
    let mut rest = answers;
    while rest.len() >= 10 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let body = rest.get(4..4 + len)?;
        if body.get(..4)? == correlation.to_be_bytes() {
            return Some(i16::from_be_bytes(body.get(4..6)?.try_into().unwrap()));
        }
        rest = &rest[4 + len..];
    }
    None
}

/// The SASL broker logs its users in and serves what follows a login (so
/// the fuzzer reaches the authorized handlers), and refuses a wrong
/// password.
#[test]
fn the_sasl_broker_logs_its_users_in() {
    let metadata = frame(3, 1, 3, &(-1i32).to_be_bytes());
    assert!(
        !fuzz::answers(&[vec![0], metadata.clone()].concat()).is_empty(),
        "Metadata is answered on the PLAINTEXT broker"
    );
    let behind_login = fuzz::answers(&[plain_login("alice", "alice-secret"), metadata].concat());
    assert_eq!(
        error_code(&behind_login, 3),
        Some(0),
        "Metadata sent behind alice's login"
    );
    let failed = kafka_protocol::error::ResponseError::SaslAuthenticationFailed.code();
    for (user, password, code) in [
        ("admin", "admin-secret", 0),
        ("alice", "alice-secret", 0),
        ("admin", "wrong", failed),
    ] {
        let answers = fuzz::answers(&plain_login(user, password));
        assert_eq!(
            error_code(&answers, 2),
            Some(code),
            "SaslAuthenticate as {user} with {password}"
        );
    }
}
