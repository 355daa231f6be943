//! SCRAM (RFC 5802, RFC 7677; Kafka's KIP-84) on the server side, for
//! SCRAM-SHA-256 and SCRAM-SHA-512. A credential keeps the salt, the
//! iteration count, StoredKey and ServerKey: never the password nor the
//! salted password, so a stolen store does not log anyone in.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

/// Kafka's minimum (and the default of its tools).
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's maximum.
pub const MAX_ITERATIONS: u32 = 16384;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's ScramMechanism type byte (Describe/AlterUserScramCredentials).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<ScramMechanism> {
        match t {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .find(|m| m.name() == name)
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Equal bytes, compared in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(m: ScramMechanism, key: &[u8], msg: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(m.hmac(), key), msg)
        .as_ref()
        .to_vec()
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    // The system's generator failing leaves nothing safe to do.
    ring::rand::SystemRandom::new()
        .fill(&mut v)
        .expect("the system random number generator");
    v
}

impl ScramCredential {
    /// From a password: a new random salt.
    pub fn new(m: ScramMechanism, password: &str, iterations: u32) -> ScramCredential {
        let mut salted = vec![0u8; m.len()];
        let salt = random_bytes(32);
        pbkdf2::derive(
            m.pbkdf2(),
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        Self::from_salted(m, salt, iterations, &salted)
    }

    /// From a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted(
        m: ScramMechanism,
        salt: Vec<u8>,
        iterations: u32,
        salted: &[u8],
    ) -> ScramCredential {
        let client_key = mac(m, salted, b"Client Key");
        ScramCredential {
            salt,
            iterations,
            stored_key: digest::digest(m.digest(), &client_key).as_ref().to_vec(),
            server_key: mac(m, salted, b"Server Key"),
        }
    }

    /// Whether `password` is this credential's (SASL/PLAIN against a SCRAM
    /// store): one PBKDF2 run.
    pub fn check_password(&self, m: ScramMechanism, password: &str) -> bool {
        let mut salted = vec![0u8; m.len()];
        let Some(iterations) = std::num::NonZeroU32::new(self.iterations) else {
            return false;
        };
        pbkdf2::derive(
            m.pbkdf2(),
            iterations,
            &self.salt,
            password.as_bytes(),
            &mut salted,
        );
        let c = Self::from_salted(m, self.salt.clone(), self.iterations, &salted);
        same(&c.stored_key, &self.stored_key)
    }
}

/// A SCRAM exchange in progress.
pub struct ScramServer {
    mechanism: ScramMechanism,
    /// Postgres's SCRAM: the user is the startup message's, and the
    /// client-first's `n=` (libpq sends it empty) is not read.
    login_user: Option<String>,
    state: State,
}

enum State {
    /// Waiting for the client-first message.
    First,
    /// Sent server-first; waiting for client-final.
    Final {
        user: String,
        /// None: the user is unknown; the exchange runs to the end with a
        /// made-up salt and fails then, so nothing says the user does not exist.
        credential: Option<ScramCredential>,
        gs2_header: String,
        nonce: String,
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

/// What a step of the exchange gives.
pub enum Step {
    /// Send this challenge and wait for the client's next message.
    Continue(Vec<u8>),
    /// Authenticated as this user; send the server-final message.
    Done { user: String, last: Vec<u8> },
    /// Refused (bad proof, unknown user, a malformed message). The reason
    /// is logged, never sent: the client hears only "invalid credentials".
    Failed(String),
}

/// SCRAM's `saslname` decoding (`=2C` is `,`, `=3D` is `=`).
fn decode_name(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn attr(part: Option<&str>, name: char) -> Option<&str> {
    let p = part?;
    let mut c = p.chars();
    (c.next() == Some(name) && c.next() == Some('=')).then(|| &p[2..])
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            login_user: None,
            state: State::First,
        }
    }

    /// An exchange for a user already named (the Postgres startup message's).
    pub fn for_user(mechanism: ScramMechanism, user: &str) -> ScramServer {
        ScramServer {
            login_user: Some(user.to_string()),
            ..ScramServer::new(mechanism)
        }
    }

    /// Whether the client-first message is still to come.
    pub fn is_first(&self) -> bool {
        matches!(self.state, State::First)
    }

    /// One client message. `lookup` finds a user's credential; `fake_salt`
    /// makes the salt shown for an unknown user (stable per user name).
    pub fn step(
        &mut self,
        msg: &[u8],
        lookup: impl Fn(&str) -> Option<ScramCredential>,
        fake_salt: impl Fn(&str) -> Vec<u8>,
    ) -> Step {
        let Ok(msg) = std::str::from_utf8(msg) else {
            return Step::Failed("a SCRAM message that is not UTF-8".into());
        };
        match std::mem::replace(&mut self.state, State::Done) {
            State::First => self.first(msg, lookup, fake_salt),
            State::Final {
                user,
                credential,
                gs2_header,
                nonce,
                client_first_bare,
                server_first,
            } => {
                let m = self.mechanism;
                // client-final-message: c=<b64 gs2 header>,r=<nonce>[,...],p=<proof>
                let Some((without_proof, proof)) = msg.rsplit_once(",p=") else {
                    return Step::Failed("client-final without a proof".into());
                };
                let mut parts = without_proof.split(',');
                let channel = attr(parts.next(), 'c');
                let got_nonce = attr(parts.next(), 'r');
                if channel != Some(B64.encode(gs2_header.as_bytes()).as_str()) {
                    return Step::Failed("channel binding does not match the gs2 header".into());
                }
                // Kafka's server checks only that the nonce ends with the one
                // it sent: older librdkafka (2.0.2, Debian's kcat) repeats its own.
                if !got_nonce.is_some_and(|n| n.ends_with(nonce.as_str())) {
                    return Step::Failed(format!(
                        "the nonce does not match ({got_nonce:?}, sent {nonce:?})"
                    ));
                }
                let Ok(proof) = B64.decode(proof) else {
                    return Step::Failed("the proof is not base64".into());
                };
                let Some(cred) = credential else {
                    return Step::Failed(format!("unknown user {user:?}"));
                };
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = mac(m, &cred.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Step::Failed(format!("wrong password for {user:?}"));
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let stored = digest::digest(m.digest(), &client_key);
                if !same(stored.as_ref(), &cred.stored_key) {
                    return Step::Failed(format!("wrong password for {user:?}"));
                }
                let server_signature = mac(m, &cred.server_key, auth_message.as_bytes());
                Step::Done {
                    user,
                    last: format!("v={}", B64.encode(server_signature)).into_bytes(),
                }
            }
            State::Done => Step::Failed("a SCRAM message after the exchange ended".into()),
        }
    }

    fn first(
        &mut self,
        msg: &str,
        lookup: impl Fn(&str) -> Option<ScramCredential>,
        fake_salt: impl Fn(&str) -> Vec<u8>,
    ) -> Step {
        // gs2-header: ("n" | "y" | "p=..") "," [authzid] ","
        let mut it = msg.splitn(3, ',');
        let (Some(cb), Some(authzid), Some(bare)) = (it.next(), it.next(), it.next()) else {
            return Step::Failed("a client-first message without a gs2 header".into());
        };
        if cb != "n" && cb != "y" {
            return Step::Failed("channel binding is not supported".into());
        }
        let mut parts = bare.split(',');
        let named = attr(parts.next(), 'n').and_then(decode_name);
        let user = match (&self.login_user, named) {
            (Some(login), Some(_)) => login.clone(),
            (None, Some(named)) if !named.is_empty() => named,
            _ => return Step::Failed("a client-first message without a user name".into()),
        };
        let Some(client_nonce) = attr(parts.next(), 'r').filter(|n| !n.is_empty()) else {
            return Step::Failed("a client-first message without a nonce".into());
        };
        if !authzid.is_empty()
            && attr(Some(authzid), 'a').and_then(decode_name) != Some(user.clone())
        {
            return Step::Failed("an authorization id other than the user".into());
        }
        let credential = lookup(&user);
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (fake_salt(&user), MIN_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(18)));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let gs2_header = format!("{cb},{authzid},");
        self.state = State::Final {
            user,
            credential,
            gs2_header,
            nonce,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
        };
        Step::Continue(server_first.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side, as RFC 5802 describes it, for the tests.
    fn client_final(
        m: ScramMechanism,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let mut salt = None;
        let mut iterations = 0;
        let mut nonce = "";
        for p in server_first.split(',') {
            match p.split_at(2) {
                ("r=", v) => nonce = v,
                ("s=", v) => salt = Some(B64.decode(v).unwrap()),
                ("i=", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        let salt = salt.unwrap();
        let mut salted = vec![0u8; m.len()];
        pbkdf2::derive(
            m.pbkdf2(),
            std::num::NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = mac(m, &salted, b"Client Key");
        let stored = digest::digest(m.digest(), &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = mac(m, stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_sig = mac(m, &mac(m, &salted, b"Server Key"), auth.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            server_sig,
        )
    }

    fn run(m: ScramMechanism, stored_password: &str, password: &str, user: &str) -> Step {
        let cred = ScramCredential::new(m, stored_password, MIN_ITERATIONS);
        let lookup = |u: &str| (u == "alice").then(|| cred.clone());
        let mut s = ScramServer::new(m);
        let bare = format!("n={user},r=fyko+d2lbbFgONRv9qkxdawL");
        let Step::Continue(first) =
            s.step(format!("n,,{bare}").as_bytes(), lookup, |_| vec![7; 32])
        else {
            panic!("no server-first")
        };
        let first = String::from_utf8(first).unwrap();
        let (fin, server_sig) = client_final(m, password, &bare, &first);
        match s.step(fin.as_bytes(), lookup, |_| vec![7; 32]) {
            Step::Done { user, last } => {
                assert_eq!(last, format!("v={}", B64.encode(server_sig)).into_bytes());
                Step::Done { user, last }
            }
            other => other,
        }
    }

    #[test]
    fn a_client_with_the_password_is_authenticated() {
        for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
            assert!(
                matches!(run(m, "pencil", "pencil", "alice"), Step::Done { user, .. } if user == "alice")
            );
            assert!(matches!(run(m, "pencil", "pen", "alice"), Step::Failed(_)));
            assert!(matches!(run(m, "pencil", "pencil", "bob"), Step::Failed(_)));
        }
    }

    #[test]
    fn postgres_logins_take_the_startup_user_not_the_message_one() {
        let m = ScramMechanism::Sha256;
        let cred = ScramCredential::new(m, "pencil", MIN_ITERATIONS);
        let lookup = |u: &str| (u == "alice").then(|| cred.clone());
        for (login, password, ok) in [
            ("alice", "pencil", true),
            ("alice", "pen", false),
            ("bob", "pencil", false),
        ] {
            // libpq leaves n= empty: the user is the startup message's.
            let bare = "n=,r=rOprNGfwEbeRWgbNEkqO";
            let mut s = ScramServer::for_user(m, login);
            let Step::Continue(first) =
                s.step(format!("n,,{bare}").as_bytes(), lookup, |_| vec![7; 32])
            else {
                panic!("no server-first")
            };
            let (fin, _) = client_final(m, password, bare, &String::from_utf8(first).unwrap());
            let got = s.step(fin.as_bytes(), lookup, |_| vec![7; 32]);
            assert_eq!(
                matches!(got, Step::Done { ref user, .. } if user == login),
                ok,
                "{login} {password}"
            );
        }
        // A Kafka login must name its user.
        let mut s = ScramServer::new(m);
        assert!(matches!(
            s.step(b"n,,n=,r=abc", lookup, |_| vec![1]),
            Step::Failed(_)
        ));
    }

    #[test]
    fn plain_passwords_check_against_the_credential() {
        let c = ScramCredential::new(ScramMechanism::Sha512, "s3cret", MIN_ITERATIONS);
        assert!(c.check_password(ScramMechanism::Sha512, "s3cret"));
        assert!(!c.check_password(ScramMechanism::Sha512, "S3cret"));
    }

    #[test]
    fn malformed_messages_fail() {
        let lookup = |_: &str| None;
        for m in [
            &b"y"[..],
            b"p=tls-unique,,n=alice,r=abc",
            b"n,,r=abc",
            b"n,,n=alice",
            b"n,a=bob,n=alice,r=abc",
            b"n,,n=al=ZZice,r=abc",
            &[0xff, 0xfe],
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            assert!(
                matches!(s.step(m, lookup, |_| vec![1]), Step::Failed(_)),
                "{m:?}"
            );
        }
        let mut s = ScramServer::new(ScramMechanism::Sha256);
        assert!(matches!(
            s.step(b"n,,n=alice,r=abc", lookup, |_| vec![1]),
            Step::Continue(_)
        ));
        assert!(matches!(
            s.step(b"c=biws,r=wrong,p=AAAA", lookup, |_| vec![1]),
            Step::Failed(_)
        ));
        assert!(matches!(
            s.step(b"anything", lookup, |_| vec![1]),
            Step::Failed(_)
        ));
    }
}
