//! SASL on a SASL_PLAINTEXT listener (issue 19), over the wire: only the
//! exchange is served before a login; PLAIN and SCRAM logins; a wrong
//! password and an unknown user get the same SASL_AUTHENTICATION_FAILED
//! and the connection closed; an unknown mechanism, a SaslAuthenticate
//! before the handshake, an oversized or malformed token are refused; a
//! login that expires (KIP-368) ends the connection at the next request.

mod support;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use support::{Broker, Client, free_port};

const USERS: &str = "alice:wonder land\nbob:builder\n";

fn start(extra: &[&str]) -> (Broker, u16) {
    let mut b = Broker::unstarted(None, &[]);
    let sasl = free_port();
    let users = b.dir.path().join("users.txt");
    std::fs::write(&users, USERS).unwrap();
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        b.kafka_port
    );
    b.extra = [
        "--listeners",
        &listeners,
        "--sasl-users-file",
        users.to_str().unwrap(),
        "--sasl-enabled-mechanisms",
        "PLAIN,SCRAM-SHA-256",
        "--sql-enabled",
        "false",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    b.spawn();
    (b, sasl)
}

fn handshake(c: &mut Client, mechanism: &str) -> SaslHandshakeResponse {
    c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
}

fn authenticate(c: &mut Client, token: &[u8]) -> SaslAuthenticateResponse {
    c.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token)),
    )
}

fn plain_login(port: u16, user: &str, password: &str) -> (Client, SaslAuthenticateResponse) {
    let mut c = support::connect(port);
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = authenticate(&mut c, format!("\0{user}\0{password}").as_bytes());
    (c, r)
}

fn metadata(c: &mut Client) -> Option<MetadataResponse> {
    c.try_call(ApiKey::Metadata, 12, &MetadataRequest::default())
}

#[test]
fn only_the_exchange_is_served_before_a_login_and_plain_logs_in() {
    let (b, port) = start(&[]);
    let mut c = support::connect(port);
    // ApiVersions lists the SASL APIs; Metadata before a login closes.
    let v: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(
        v.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16)
    );
    assert!(
        metadata(&mut c).is_none(),
        "Metadata was served before a login"
    );
    // A login, then everything is served.
    let (mut c, r) = plain_login(port, "alice", "wonder land");
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0));
    assert_eq!(metadata(&mut c).unwrap().brokers[0].port, port as i32);
    // The PLAINTEXT listener needs no login, and has no SASL to speak of.
    let mut p = support::connect(b.kafka_port);
    assert_eq!(
        handshake(&mut p, "PLAIN").error_code,
        ResponseError::IllegalSaslState.code()
    );
    assert!(metadata(&mut p).is_some());
}

/// A client may send requests behind its SaslAuthenticate without waiting
/// for the answer: they are served after the login, in order, as Kafka
/// reads them; behind a failed login nothing more is served.
#[test]
fn requests_pipelined_behind_a_login_are_served_after_it() {
    use kafka_protocol::protocol::{Decodable, Encodable};
    let (_b, port) = start(&[]);
    for (password, logged_in) in [("wonder land", true), ("wonderland", false)] {
        let mut c = support::connect(port);
        let mut body = bytes::BytesMut::new();
        SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str("PLAIN"))
            .encode(&mut body, 1)
            .unwrap();
        let mut pipelined = c.frame(ApiKey::SaslHandshake, 1, &body);
        let mut body = bytes::BytesMut::new();
        SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from(format!("\0alice\0{password}")))
            .encode(&mut body, 1)
            .unwrap();
        pipelined.extend_from_slice(&c.frame(ApiKey::SaslAuthenticate, 1, &body));
        let mut body = bytes::BytesMut::new();
        MetadataRequest::default().encode(&mut body, 1).unwrap();
        pipelined.extend_from_slice(&c.frame(ApiKey::Metadata, 1, &body));
        c.send_raw(&pipelined);
        // Answers in order: the handshake's (correlation 1), the login's (2).
        for correlation in [1i32, 2] {
            let answer = c.read_frame().expect("an answer");
            assert_eq!(answer[..4], correlation.to_be_bytes());
        }
        match c.read_frame() {
            Some(mut answer) if logged_in => {
                assert_eq!(answer[..4], 3i32.to_be_bytes());
                let _ = bytes::Buf::get_i32(&mut answer);
                let m = MetadataResponse::decode(&mut answer, 1).unwrap();
                assert_eq!(m.brokers[0].port, port as i32);
            }
            None if !logged_in => {}
            other => panic!("{password}: after the login's answer {other:?}"),
        }
    }
}

#[test]
fn wrong_passwords_and_unknown_users_look_the_same_and_close() {
    let (b, port) = start(&[]);
    let (mut c1, wrong) = plain_login(port, "alice", "wonderland");
    let (mut c2, unknown) = plain_login(port, "mallory", "wonder land");
    for r in [&wrong, &unknown] {
        assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
    }
    assert_eq!(wrong.error_message, unknown.error_message);
    assert_eq!(
        wrong.error_message.as_deref().map(|m| m.to_string()),
        Some(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism PLAIN".into()
        )
    );
    assert!(c1.closed_by_broker() && c2.closed_by_broker());
    let failed = b.metric(
        "karnak_sasl_authentications_total",
        &["mechanism=\"PLAIN\"", "result=\"failed\""],
    );
    assert_eq!(failed, 2.0);
}

#[test]
fn a_failed_login_is_answered_after_the_failed_authentication_delay() {
    let (_b, port) = start(&["--connection-failed-authentication-delay-ms", "400"]);
    let started = std::time::Instant::now();
    let (mut c, r) = plain_login(port, "alice", "guess");
    assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(400),
        "answered after {waited:?}"
    );
    assert!(c.closed_by_broker());
    // A good login is not held back.
    let (_c, ok) = plain_login(port, "alice", "wonder land");
    assert_eq!(ok.error_code, 0);
}

#[test]
fn one_address_flooding_wrong_passwords_waits_its_turn_then_is_refused_unchecked() {
    // 2 failed logins a second per address, no per-connection delay: 20
    // guesses at once from 127.0.0.1 get 2 checked at once, the next ten
    // half a second apart (up to 5 s), and the rest refused without a
    // check.
    let (b, port) = start(&[
        "--failed-authentication-rate-per-ip",
        "2",
        "--connection-failed-authentication-delay-ms",
        "0",
    ]);
    let started = std::time::Instant::now();
    let guesses: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let (_c, r) = plain_login(port, "alice", "guess");
                (r.error_code, started.elapsed())
            })
        })
        .collect();
    let mut answers: Vec<_> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    answers.sort_by_key(|a| a.1);
    assert!(
        answers
            .iter()
            .all(|a| a.0 == ResponseError::SaslAuthenticationFailed.code())
    );
    let slowest = answers.last().unwrap().1;
    assert!(
        slowest >= std::time::Duration::from_millis(4000),
        "the last checked guess waited only {slowest:?}"
    );
    let label = |result: &str| {
        b.metric(
            "karnak_sasl_authentications_total",
            &["mechanism=\"PLAIN\"", &format!("result=\"{result}\"")],
        )
    };
    let (checked, unchecked) = (label("failed"), label("unchecked"));
    assert_eq!(checked + unchecked, 20.0);
    assert!(unchecked >= 1.0, "every guess was checked");
    // Checked: the two at once plus two a second since.
    assert!(
        checked <= 3.0 + 2.0 * slowest.as_secs_f64(),
        "{checked} checked in {slowest:?}"
    );
}

#[test]
fn bad_exchanges_are_refused_with_kafkas_errors() {
    let (_b, port) = start(&[]);
    // An unknown (or not enabled) mechanism: the enabled ones, then closed.
    let mut c = support::connect(port);
    let r = handshake(&mut c, "SCRAM-SHA-512");
    assert_eq!(r.error_code, ResponseError::UnsupportedSaslMechanism.code());
    let names: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(names, ["PLAIN", "SCRAM-SHA-256"]);
    assert!(c.closed_by_broker());
    // SaslAuthenticate before the handshake.
    let mut c = support::connect(port);
    let r = authenticate(&mut c, b"\0alice\0wonder land");
    assert_eq!(r.error_code, ResponseError::IllegalSaslState.code());
    assert!(c.closed_by_broker());
    // A token over the bound, a truncated SCRAM message, a malformed PLAIN one.
    for (mechanism, token) in [
        ("PLAIN", vec![b'x'; 600 * 1024]),
        ("SCRAM-SHA-256", b"n,,n=alice".to_vec()),
        ("PLAIN", b"alice".to_vec()),
    ] {
        let mut c = support::connect(port);
        assert_eq!(handshake(&mut c, mechanism).error_code, 0);
        let r = authenticate(&mut c, &token);
        assert_eq!(
            r.error_code,
            ResponseError::SaslAuthenticationFailed.code(),
            "{mechanism} {}",
            token.len()
        );
        assert!(c.closed_by_broker());
    }
    // The broker goes on.
    let (mut c, r) = plain_login(port, "bob", "builder");
    assert_eq!(r.error_code, 0);
    assert!(metadata(&mut c).is_some());
}

/// What is tested is a lifetime running out: this waits it out.
fn outlive_the_login() {
    std::thread::sleep(std::time::Duration::from_millis(400));
}

#[test]
fn an_expired_login_ends_the_connection_unless_renewed() {
    let (_b, port) = start(&["--connections-max-reauth-ms", "300"]);
    let (mut c, r) = plain_login(port, "alice", "wonder land");
    assert_eq!((r.error_code, r.session_lifetime_ms), (0, 300));
    assert!(metadata(&mut c).is_some());
    // Logging in again (KIP-368) renews it, as the same user only.
    outlive_the_login();
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    assert_eq!(authenticate(&mut c, b"\0alice\0wonder land").error_code, 0);
    assert!(metadata(&mut c).is_some(), "served after logging in again");
    outlive_the_login();
    assert!(metadata(&mut c).is_none(), "served after the login expired");
    let (mut c, _) = plain_login(port, "alice", "wonder land");
    assert_eq!(handshake(&mut c, "PLAIN").error_code, 0);
    let r = authenticate(&mut c, b"\0bob\0builder");
    assert_eq!(
        r.error_code,
        ResponseError::SaslAuthenticationFailed.code(),
        "re-login as bob"
    );
}
