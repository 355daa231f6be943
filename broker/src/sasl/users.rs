//! The users files (`--sasl-users-file`, `--sql-password-file`): `user:password`
//! lines turned into SCRAM credentials at start and added to the cluster
//! metadata for the users it has none for. One store serves Kafka SASL and
//! the SQL gateway.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use karnak_coordinator::metadata::{ClusterMetadata, ScramRecord, ScramUpsert};

use super::scram::{MIN_ITERATIONS, ScramCredential, ScramMechanism};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: &'static str,
    },
}

/// The users of `--sasl-users-file` (and `--sql-password-file`), as
/// credentials to bootstrap.
pub struct Users {
    creds: HashMap<(String, ScramMechanism), ScramCredential>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({})", self.len())
    }
}

/// Largest users file read: it is a list of users, not a database.
const MAX_USERS_FILE: u64 = 1 << 20;

/// The `user:password` lines of a users file: blank lines and `#` comments
/// skipped, the password everything after the first colon, each user once.
/// An error names the line (1-based; 0 when there is no user at all).
pub fn user_lines(text: &str) -> Result<Vec<(&str, &str)>, (usize, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (user, password) = line
            .split_once(':')
            .ok_or((i + 1, "expected user:password"))?;
        if user.is_empty() || password.is_empty() {
            return Err((i + 1, "the user name and the password must not be empty"));
        }
        if out.iter().any(|(u, _)| *u == user) {
            return Err((i + 1, "this user is named twice"));
        }
        out.push((user, password));
    }
    if out.is_empty() {
        return Err((0, "no user"));
    }
    Ok(out)
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let shown = path.display().to_string();
        let read = |source| UsersError::Read {
            path: shown.clone(),
            source,
        };
        if std::fs::metadata(path).map_err(read)?.len() > MAX_USERS_FILE {
            return Err(UsersError::Line {
                path: shown,
                line: 0,
                reason: "the file is over 1 MiB",
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Users::parse(&text).map_err(|(line, reason)| UsersError::Line {
            path: shown,
            line,
            reason,
        })
    }

    /// Several files' users (`--sasl-users-file`, `--sql-password-file`);
    /// a user in two of them is an error (which password would win?).
    pub fn load_all(paths: &[std::path::PathBuf]) -> Result<Users, UsersError> {
        let mut all = Users {
            creds: HashMap::new(),
        };
        for path in paths {
            let more = Users::load(path)?;
            if more.creds.keys().any(|k| all.creds.contains_key(k)) {
                return Err(UsersError::Line {
                    path: path.display().to_string(),
                    line: 0,
                    reason: "a user of this file is in another users file too",
                });
            }
            all.creds.extend(more.creds);
        }
        Ok(all)
    }

    /// `user:password` lines ([`user_lines`]).
    pub fn parse(text: &str) -> Result<Users, (usize, &'static str)> {
        let mut creds = HashMap::new();
        for (user, password) in user_lines(text)? {
            for m in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                creds.insert(
                    (user.to_string(), m),
                    ScramCredential::new(m, password, MIN_ITERATIONS),
                );
            }
        }
        Ok(Users { creds })
    }

    pub fn len(&self) -> usize {
        self.creds.len() / 2
    }

    /// The credentials the metadata lacks, to bootstrap.
    pub fn missing(&self, meta: &ClusterMetadata) -> Vec<ScramUpsert> {
        let mut out: Vec<ScramUpsert> = self
            .creds
            .iter()
            .filter(|((user, m), _)| meta.scram_credential(user, m.name()).is_none())
            .map(|((user, m), c)| ScramUpsert {
                user: user.clone(),
                mechanism: m.name().to_string(),
                credential: ScramRecord {
                    salt: c.salt.clone(),
                    iterations: c.iterations,
                    stored_key: c.stored_key.clone(),
                    server_key: c.server_key.clone(),
                },
            })
            .collect();
        out.sort_by(|a, b| (&a.user, &a.mechanism).cmp(&(&b.user, &b.mechanism)));
        out
    }
}

/// Adds the users of `--sasl-users-file` that the metadata has no
/// credential for, and waits until this broker has applied them.
pub async fn bootstrap(broker: &crate::broker::Broker) -> anyhow::Result<()> {
    use anyhow::Context;
    let Some(users) = broker.config.users.as_ref() else {
        return Ok(());
    };
    let missing = users.missing(&broker.cluster.metadata());
    if missing.is_empty() {
        return Ok(());
    }
    let n = missing.len();
    let cmd = karnak_coordinator::metadata::MetadataCommand::AlterScramCredentials {
        upserts: missing,
        deletions: Vec::new(),
    };
    broker
        .cluster
        .propose(cmd, Duration::from_secs(30))
        .await
        .context("adding --sasl-users-file's users to the metadata")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !users.missing(&broker.cluster.metadata()).is_empty() {
        if Instant::now() > deadline {
            anyhow::bail!("--sasl-users-file's users were added but not applied here within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(
        credentials = n,
        "added --sasl-users-file's users to the metadata"
    );
    Ok(())
}
