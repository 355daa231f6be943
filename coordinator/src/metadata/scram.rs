//! SCRAM credentials in the metadata (Kafka keeps them in KRaft's metadata
//! log too): per user and mechanism, the salt, the iteration count,
//! StoredKey and ServerKey. Never the password or the salted password.
//! AlterUserScramCredentials changes them; every broker authenticates
//! against the same set.

use serde::{Deserialize, Serialize};

use super::state::ClusterMetadata;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramRecord {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// One credential set or replaced: user, mechanism (`SCRAM-SHA-256`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramUpsert {
    pub user: String,
    pub mechanism: String,
    pub credential: ScramRecord,
}

impl ClusterMetadata {
    /// Deletions then upserts, all at once (the request was validated by
    /// the broker that proposed it; deleting what is not there changes
    /// nothing).
    pub(super) fn alter_scram(&mut self, upserts: &[ScramUpsert], deletions: &[(String, String)]) {
        for (user, mechanism) in deletions {
            if let Some(m) = self.scram.get_mut(user) {
                m.remove(mechanism);
                if m.is_empty() {
                    self.scram.remove(user);
                }
            }
        }
        for u in upserts {
            self.scram
                .entry(u.user.clone())
                .or_default()
                .insert(u.mechanism.clone(), u.credential.clone());
        }
    }

    /// A user's credential for a mechanism.
    pub fn scram_credential(&self, user: &str, mechanism: &str) -> Option<&ScramRecord> {
        self.scram.get(user)?.get(mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::MetadataCommand;

    fn record(b: u8) -> ScramRecord {
        ScramRecord {
            salt: vec![b],
            iterations: 4096,
            stored_key: vec![b; 32],
            server_key: vec![b; 32],
        }
    }

    #[test]
    fn credentials_are_set_replaced_and_deleted_through_the_log() {
        let mut m = ClusterMetadata::default();
        let up = |user: &str, mech: &str, b| ScramUpsert {
            user: user.into(),
            mechanism: mech.into(),
            credential: record(b),
        };
        m.apply(&MetadataCommand::AlterScramCredentials {
            upserts: vec![
                up("alice", "SCRAM-SHA-256", 1),
                up("alice", "SCRAM-SHA-512", 2),
            ],
            deletions: vec![],
        })
        .unwrap();
        assert_eq!(
            m.scram_credential("alice", "SCRAM-SHA-512"),
            Some(&record(2))
        );
        m.apply(&MetadataCommand::AlterScramCredentials {
            upserts: vec![up("alice", "SCRAM-SHA-256", 3)],
            deletions: vec![
                ("alice".into(), "SCRAM-SHA-512".into()),
                ("bob".into(), "x".into()),
            ],
        })
        .unwrap();
        assert_eq!(
            m.scram_credential("alice", "SCRAM-SHA-256"),
            Some(&record(3))
        );
        assert_eq!(m.scram_credential("alice", "SCRAM-SHA-512"), None);
        m.apply(&MetadataCommand::AlterScramCredentials {
            upserts: vec![],
            deletions: vec![("alice".into(), "SCRAM-SHA-256".into())],
        })
        .unwrap();
        assert!(m.scram.is_empty());
        // Survives a snapshot (the state machine's JSON).
        m.apply(&MetadataCommand::AlterScramCredentials {
            upserts: vec![up("carol", "SCRAM-SHA-256", 4)],
            deletions: vec![],
        })
        .unwrap();
        let back: ClusterMetadata =
            serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(
            back.scram_credential("carol", "SCRAM-SHA-256"),
            Some(&record(4))
        );
    }
}
