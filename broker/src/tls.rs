//! TLS for the Kafka listeners (rustls, ring; no OpenSSL): the broker's
//! certificate chain and key from PEM files, optional client certificates
//! checked against a PEM truststore (`--ssl-client-auth none|requested|required`,
//! Kafka's `ssl.client.auth`), and a certificate that is reloaded when its
//! files change or on SIGHUP: new handshakes use the new one, connections
//! already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// How often the certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(s: &str) -> anyhow::Result<ClientAuth> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "none" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => bail!("--ssl-client-auth {other:?}: expected none, requested or required"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    /// PEM CA certificates client certificates are checked against.
    pub truststore_file: Option<PathBuf>,
}

/// The TLS settings the listeners need: None without an SSL or SASL_SSL
/// listener; such a listener without a certificate and key is an error.
pub fn settings(
    listeners: &crate::listeners::Listeners,
    certificate_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth: Option<&str>,
    truststore_file: Option<PathBuf>,
) -> anyhow::Result<Option<TlsSettings>> {
    let Some(tls_listener) = listeners.specs.iter().find(|l| l.protocol.tls()) else {
        if certificate_file.is_some() || key_file.is_some() {
            tracing::warn!("--ssl-certificate-file and --ssl-key-file are unused: no SSL listener");
        }
        return Ok(None);
    };
    let (Some(certificate_file), Some(key_file)) = (certificate_file, key_file) else {
        bail!(
            "listener {} is SSL: give --ssl-certificate-file and --ssl-key-file",
            tls_listener.name
        );
    };
    Ok(Some(TlsSettings {
        certificate_file,
        key_file,
        client_auth: ClientAuth::parse(client_auth.unwrap_or("none"))?,
        truststore_file,
    }))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The chain and key in the files, checked to belong together.
fn load_key(s: &TlsSettings, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&s.certificate_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .with_context(|| format!("reading certificates from {}", s.certificate_file.display()))?;
    if chain.is_empty() {
        bail!("no certificate in {}", s.certificate_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(&s.key_file)
        .with_context(|| format!("reading a private key from {}", s.key_file.display()))?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "{} and {} do not make a usable certificate and key",
            s.certificate_file.display(),
            s.key_file.display()
        )
    })
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The certificate handed to each handshake; replaced on reload.
#[derive(Debug)]
struct Reloading {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Reloading {
    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        (
            modified(&self.settings.certificate_file),
            modified(&self.settings.key_file),
        )
    }

    /// Loads the files again. A bad pair is logged and the old one kept.
    fn reload(&self, why: &str) {
        let stamps = self.stamps();
        *self.stamps.write().unwrap_or_else(|e| e.into_inner()) = stamps;
        match load_key(&self.settings, &self.provider) {
            Ok(k) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(k);
                tracing::info!(
                    certificate = %self.settings.certificate_file.display(),
                    why,
                    "TLS certificate reloaded"
                );
            }
            Err(e) => tracing::error!(
                why,
                "TLS certificate not reloaded, the previous one stays in use: {e:#}"
            ),
        }
    }
}

/// The listeners' TLS setup: one server config shared by every TLS
/// listener, its certificate reloadable.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    reloading: Arc<Reloading>,
}

impl Tls {
    pub fn new(settings: TlsSettings) -> anyhow::Result<Tls> {
        let provider = provider();
        let key = load_key(&settings, &provider)?;
        let verifier = match (settings.client_auth, &settings.truststore_file) {
            (ClientAuth::None, _) => WebPkiClientVerifier::no_client_auth(),
            (_, None) => {
                bail!("--ssl-client-auth requested or required needs --ssl-truststore-file")
            }
            (auth, Some(path)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(path)
                    .with_context(|| format!("reading {}", path.display()))?
                {
                    let cert = cert.with_context(|| format!("reading {}", path.display()))?;
                    roots
                        .add(cert)
                        .with_context(|| format!("a CA certificate in {}", path.display()))?;
                }
                if roots.is_empty() {
                    bail!("no CA certificate in {}", path.display());
                }
                let b =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let b = if auth == ClientAuth::Requested {
                    b.allow_unauthenticated()
                } else {
                    b
                };
                b.build().context("the client certificate verifier")?
            }
        };
        let reloading = Arc::new(Reloading {
            provider: provider.clone(),
            current: RwLock::new(Arc::new(key)),
            stamps: RwLock::new((None, None)),
            settings,
        });
        *reloading.stamps.write().unwrap_or_else(|e| e.into_inner()) = reloading.stamps();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(reloading.clone());
        Ok(Tls {
            config: Arc::new(config),
            reloading,
        })
    }

    /// Reloads the certificate when its files change or on SIGHUP, until
    /// the process ends.
    pub fn spawn_reloader(&self) {
        let r = self.reloading.clone();
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(RELOAD_CHECK);
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = hangup => r.reload("SIGHUP"),
                    _ = tick.tick() => {
                        let now = r.stamps();
                        let seen = *r.stamps.read().unwrap_or_else(|e| e.into_inner());
                        if now != seen {
                            r.reload("the files changed");
                        }
                    }
                }
            }
        });
    }
}
