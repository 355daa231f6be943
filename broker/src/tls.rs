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
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};

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
/// listener and without TLS on the SQL port (`sql`); either without a
/// certificate and key is an error.
pub fn settings(
    listeners: &crate::listeners::Listeners,
    sql: bool,
    certificate_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth: Option<&str>,
    truststore_file: Option<PathBuf>,
) -> anyhow::Result<Option<TlsSettings>> {
    let tls_listener = listeners.specs.iter().find(|l| l.protocol.tls());
    if tls_listener.is_none() && !sql {
        if certificate_file.is_some() || key_file.is_some() {
            tracing::warn!("--ssl-certificate-file and --ssl-key-file are unused: no SSL listener");
        }
        return Ok(None);
    }
    let (Some(certificate_file), Some(key_file)) = (certificate_file, key_file) else {
        match tls_listener {
            Some(l) => bail!(
                "listener {} is SSL: give --ssl-certificate-file and --ssl-key-file",
                l.name
            ),
            None => {
                bail!("--sql-ssl on or require needs --ssl-certificate-file and --ssl-key-file")
            }
        }
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

/// The CA certificates of a PEM truststore.
fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
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
    Ok(roots)
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

/// The same certificate, shown as a client's to other brokers.
impl ResolvesClientCert for Reloading {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
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

/// ALPN protocol of Postgres 17's direct TLS (`sslnegotiation=direct`).
const POSTGRESQL_ALPN: &[u8] = b"postgresql";

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
                let b = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(path)?),
                    provider.clone(),
                );
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

    /// The SQL port's config: the same certificate (reloaded with the
    /// listeners'), no client certificates (Postgres logins are SCRAM), and
    /// the `postgresql` ALPN protocol direct TLS negotiates.
    pub fn sql_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(self.reloading.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(self.reloading.clone());
        config.alpn_protocols = vec![POSTGRESQL_ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// Brokers' TLS to each other (an SSL inter-broker listener): each side
    /// shows this broker's certificate and requires the other's, both
    /// checked against `--ssl-truststore-file`.
    pub fn peer(&self) -> anyhow::Result<PeerTls> {
        let path = self.reloading.settings.truststore_file.as_ref().context(
            "an SSL inter-broker listener needs --ssl-truststore-file (brokers check each other's certificates)",
        )?;
        let roots = Arc::new(roots(path)?);
        let provider = self.reloading.provider.clone();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("the peer certificate verifier")?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.reloading.clone());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_client_cert_resolver(self.reloading.clone());
        Ok(PeerTls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
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

/// Mutual TLS between brokers: the inter-broker listener and the cluster
/// (Raft) listener accept only peers with a certificate from the truststore,
/// and dial others with this broker's.
pub struct PeerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
}

/// A connection to or from another broker: TCP, or TLS over it.
pub trait PeerStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync> PeerStream for T {}

/// How long a peer's TLS handshake may take.
const PEER_HANDSHAKE: Duration = Duration::from_secs(10);

impl PeerTls {
    /// TLS over a dialled `stream` to `addr` (`host:port`; the peer's
    /// certificate must name that host or IP address).
    pub async fn connect(
        &self,
        addr: &str,
        stream: Box<dyn PeerStream>,
    ) -> std::io::Result<Box<dyn PeerStream>> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host} as a TLS server name: {e}"),
            )
        })?;
        let tls = tokio::time::timeout(PEER_HANDSHAKE, self.connector.connect(name, stream))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "a peer's TLS handshake")
            })??;
        Ok(Box::new(tls))
    }

    /// TLS over an accepted peer `stream`; a peer without a good
    /// certificate fails here.
    pub async fn accept(
        &self,
        stream: Box<dyn PeerStream>,
    ) -> std::io::Result<Box<dyn PeerStream>> {
        let tls = tokio::time::timeout(PEER_HANDSHAKE, self.acceptor.accept(stream))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "a peer's TLS handshake")
            })??;
        Ok(Box::new(tls))
    }
}

/// Dials another broker: plain TCP, or mutual TLS when brokers use it.
pub async fn dial_peer(addr: &str, tls: Option<&PeerTls>) -> std::io::Result<Box<dyn PeerStream>> {
    let stream = crate::peer_net::dial(addr).await?;
    match tls {
        Some(t) => t.connect(addr, stream).await,
        None => Ok(Box::new(stream)),
    }
}
