//! Kafka's listener model: `listeners` (what the broker binds, by name),
//! `advertised.listeners` (what clients are told, per listener),
//! `listener.security.protocol.map` (each name's security protocol) and
//! `inter.broker.listener.name` (the listener brokers use to reach each
//! other). A client is told the addresses of the listener it came in on.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};

/// Kafka's security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    fn parse(s: &str) -> anyhow::Result<SecurityProtocol> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            other => bail!(
                "unknown security protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            ),
        })
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One listener: its name, where it binds, what clients are told, and its
/// security protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub bind: SocketAddr,
    /// host:port clients are told; None until bound (then the bound address).
    pub advertised: Option<(String, u16)>,
    pub protocol: SecurityProtocol,
}

/// The listeners as configured, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    pub specs: Vec<ListenerSpec>,
    /// The listener other brokers reach this one on (replication,
    /// transaction markers, remote SQL reads).
    pub inter_broker: String,
}

/// Kafka's default map: each protocol is also a listener name.
const DEFAULT_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// `NAME://host:port,...` (Kafka's format; an empty host binds every
/// interface, `[..]` holds an IPv6 address): (name, host, port) in order.
pub fn parse_endpoints(s: &str) -> anyhow::Result<Vec<(String, String, u16)>> {
    let mut out: Vec<(String, String, u16)> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, rest) = item
            .split_once("://")
            .with_context(|| format!("listener `{item}` is not NAME://host:port"))?;
        let name = name.trim().to_ascii_uppercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("listener name in `{item}` must be letters, digits and _");
        }
        let (host, port) = rest
            .rsplit_once(':')
            .with_context(|| format!("listener `{item}` has no port"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("bad port in listener `{item}`"))?;
        let host = host.trim_matches(['[', ']']).to_string();
        if out.iter().any(|(n, ..)| *n == name) {
            bail!("listener name {name} is used twice");
        }
        out.push((name, host, port));
    }
    if out.is_empty() {
        bail!("no listener in `{s}`");
    }
    Ok(out)
}

/// `NAME:PROTOCOL,...`.
pub fn parse_protocol_map(s: &str) -> anyhow::Result<BTreeMap<String, SecurityProtocol>> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| {
            let (name, proto) = item
                .split_once(':')
                .with_context(|| format!("`{item}` is not NAME:PROTOCOL"))?;
            Ok((
                name.trim().to_ascii_uppercase(),
                SecurityProtocol::parse(proto)?,
            ))
        })
        .collect()
}

/// What the flags gave, before validation.
#[derive(Default)]
pub struct ListenerFlags {
    pub listeners: Option<String>,
    pub advertised_listeners: Option<String>,
    pub protocol_map: Option<String>,
    pub inter_broker_listener_name: Option<String>,
    /// `--kafka-addr`: the one-listener shorthand.
    pub kafka_addr: Option<SocketAddr>,
    /// `--advertised-kafka-addr`: its advertised address.
    pub advertised_kafka_addr: Option<(String, u16)>,
}

impl Listeners {
    pub fn resolve(f: ListenerFlags) -> anyhow::Result<Listeners> {
        if f.listeners.is_some() && f.kafka_addr.is_some() {
            bail!("--kafka-addr is the one-listener shorthand for --listeners: give one of them");
        }
        if f.advertised_listeners.is_some() && f.advertised_kafka_addr.is_some() {
            bail!("give --advertised-listeners or --advertised-kafka-addr, not both");
        }
        let map = parse_protocol_map(f.protocol_map.as_deref().unwrap_or(DEFAULT_MAP))
            .context("--listener-security-protocol-map")?;
        let endpoints = match &f.listeners {
            Some(s) => parse_endpoints(s).context("--listeners")?,
            None => {
                let a = f
                    .kafka_addr
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092)));
                vec![("PLAINTEXT".to_string(), a.ip().to_string(), a.port())]
            }
        };
        let mut advertised: BTreeMap<String, (String, u16)> = match &f.advertised_listeners {
            Some(s) => parse_endpoints(s)
                .context("--advertised-listeners")?
                .into_iter()
                .map(|(n, h, p)| (n, (h, p)))
                .collect(),
            None => BTreeMap::new(),
        };
        if let Some(a) = f.advertised_kafka_addr {
            if endpoints.len() > 1 {
                bail!(
                    "--advertised-kafka-addr needs a single listener; use --advertised-listeners"
                );
            }
            advertised.insert(endpoints[0].0.clone(), a);
        }
        if let Some(n) = advertised
            .keys()
            .find(|n| !endpoints.iter().any(|(e, ..)| e == *n))
        {
            bail!("--advertised-listeners names {n}, which is not in --listeners");
        }
        let mut specs = Vec::with_capacity(endpoints.len());
        for (name, host, port) in endpoints {
            let protocol = *map.get(&name).with_context(|| {
                format!(
                    "listener {name} has no security protocol: add {name}:<PROTOCOL> to --listener-security-protocol-map"
                )
            })?;
            let host = if host.is_empty() { "0.0.0.0" } else { &host };
            let bind = (host, port)
                .to_socket_addrs()
                .with_context(|| format!("resolving listener {name}'s host {host}"))?
                .next()
                .with_context(|| format!("listener {name}'s host {host} has no address"))?;
            let advertised = advertised.remove(&name);
            if let Some((h, _)) = &advertised
                && (h.is_empty() || h == "0.0.0.0" || h == "::")
            {
                bail!("listener {name}: clients cannot connect to the advertised host {h:?}");
            }
            specs.push(ListenerSpec {
                name,
                bind,
                advertised,
                protocol,
            });
        }
        let inter_broker = match f.inter_broker_listener_name {
            Some(n) => {
                let n = n.trim().to_ascii_uppercase();
                if !specs.iter().any(|s| s.name == n) {
                    bail!("--inter-broker-listener-name {n} is not in --listeners");
                }
                n
            }
            None if specs.len() == 1 => specs[0].name.clone(),
            // Kafka's default: the listener named after security.inter.broker.protocol.
            None => specs
                .iter()
                .find(|s| s.name == "PLAINTEXT")
                .map(|s| s.name.clone())
                .context(
                    "several listeners and none named PLAINTEXT: give --inter-broker-listener-name",
                )?,
        };
        Ok(Listeners {
            specs,
            inter_broker,
        })
    }
}

/// A listener once bound, as its connections see it.
#[derive(Debug)]
pub struct Bound {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub addr: SocketAddr,
    /// host:port its clients are told.
    pub advertised: (String, u16),
}

impl Bound {
    /// As the metadata log records it.
    pub fn registration(&self) -> karnak_coordinator::metadata::Listener {
        karnak_coordinator::metadata::Listener {
            name: self.name.clone(),
            host: self.advertised.0.clone(),
            port: self.advertised.1,
            security_protocol: self.protocol.name().to_string(),
        }
    }
}

/// A registered broker's listener named `name` (Kafka's rule: clients are
/// told the brokers' addresses on the listener they came in on, and a
/// broker without it is not listed).
pub fn address_of<'a>(
    b: &'a karnak_coordinator::metadata::BrokerRegistration,
    name: &str,
) -> Option<&'a karnak_coordinator::metadata::Listener> {
    b.listeners.iter().find(|l| l.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(listeners: &str) -> ListenerFlags {
        ListenerFlags {
            listeners: Some(listeners.into()),
            ..Default::default()
        }
    }

    #[test]
    fn kafkas_listener_syntax() {
        let l = Listeners::resolve(flags("PLAINTEXT://127.0.0.1:9092, ssl://:9093")).unwrap();
        assert_eq!(l.specs.len(), 2);
        assert_eq!(l.specs[1].name, "SSL");
        assert_eq!(l.specs[1].bind.to_string(), "0.0.0.0:9093");
        assert_eq!(l.specs[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(l.inter_broker, "PLAINTEXT");
        let v6 = parse_endpoints("EXTERNAL://[::1]:19092").unwrap();
        assert_eq!(v6, vec![("EXTERNAL".into(), "::1".into(), 19092)]);
    }

    #[test]
    fn the_shorthand_and_defaults() {
        let l = Listeners::resolve(ListenerFlags::default()).unwrap();
        assert_eq!(l.specs[0].bind.to_string(), "127.0.0.1:9092");
        assert_eq!(l.specs[0].protocol, SecurityProtocol::Plaintext);
        let l = Listeners::resolve(ListenerFlags {
            kafka_addr: Some("127.0.0.1:19092".parse().unwrap()),
            advertised_kafka_addr: Some(("kafka.example".into(), 9092)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.specs[0].advertised, Some(("kafka.example".into(), 9092)));
    }

    #[test]
    fn custom_names_map_to_protocols() {
        let l = Listeners::resolve(ListenerFlags {
            listeners: Some("INTERNAL://127.0.0.1:1,EXTERNAL://127.0.0.1:2".into()),
            advertised_listeners: Some("EXTERNAL://kafka.example:443".into()),
            protocol_map: Some("INTERNAL:PLAINTEXT,EXTERNAL:SSL".into()),
            inter_broker_listener_name: Some("internal".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(l.inter_broker, "INTERNAL");
        assert_eq!(l.specs[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(l.specs[1].advertised, Some(("kafka.example".into(), 443)));
        assert_eq!(l.specs[0].advertised, None);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |f: ListenerFlags| format!("{:#}", Listeners::resolve(f).unwrap_err());
        assert!(err(flags("OTHER://127.0.0.1:1")).contains("no security protocol"));
        assert!(err(flags("127.0.0.1:1")).contains("NAME://host:port"));
        assert!(err(flags("PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2")).contains("twice"));
        assert!(
            err(flags("SSL://127.0.0.1:1,SASL_SSL://127.0.0.1:2"))
                .contains("--inter-broker-listener-name")
        );
        assert!(
            err(ListenerFlags {
                listeners: Some("PLAINTEXT://127.0.0.1:1".into()),
                kafka_addr: Some("127.0.0.1:2".parse().unwrap()),
                ..Default::default()
            })
            .contains("shorthand")
        );
        assert!(
            err(ListenerFlags {
                listeners: Some("PLAINTEXT://:1".into()),
                advertised_listeners: Some("PLAINTEXT://0.0.0.0:1".into()),
                ..Default::default()
            })
            .contains("cannot connect")
        );
    }
}
