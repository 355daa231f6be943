//! The Kafka listeners model and TLS (issue 19), against the real binary:
//! a PLAINTEXT and an SSL listener side by side, each client told the
//! addresses of the listener it came in on; produce and fetch over TLS
//! (records copied through a buffer, not `sendfile`); client certificates
//! required; the certificate reloaded without dropping connections; and a
//! client speaking the wrong protocol on either listener closed alone.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Broker, certs, free_port};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client trusting `ca`, with a client certificate when given.
fn client_config(ca: &Path, cert: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some((pem, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(pem)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    })
}

fn tls_connect(port: u16, config: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = rustls::ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap())
        .map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now, so a refused certificate shows here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// One request and its response over any stream.
fn call<Req: Encodable, Resp: Decodable>(
    s: &mut impl ReadWrite,
    key: ApiKey,
    version: i16,
    req: &Req,
) -> std::io::Result<Resp> {
    let mut body = BytesMut::new();
    req.encode(&mut body, version).unwrap();
    let mut h = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("tls-test")))
        .encode(&mut h, key.request_header_version(version))
        .unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32((h.len() + body.len()) as i32);
    frame.put_slice(&h);
    frame.put_slice(&body);
    s.write_all(&frame)?;
    s.flush()?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size)?;
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut buf)?;
    let mut resp = Bytes::from(buf);
    assert_eq!(resp.get_i32(), 7);
    if key.response_header_version(version) >= 1 {
        resp.get_u8();
    }
    Ok(Resp::decode(&mut resp, version).unwrap())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The brokers Metadata names, as (id, port).
fn metadata_ports(s: &mut impl ReadWrite) -> Vec<(i32, i32)> {
    let r: MetadataResponse = call(s, ApiKey::Metadata, 12, &MetadataRequest::default()).unwrap();
    r.brokers.iter().map(|b| (b.node_id.0, b.port)).collect()
}

fn start(dir: &Path, ssl_port: u16, extra: &[&str]) -> Broker {
    let (pem, key) = certs::leaf(dir, "server", "karnak-test", false);
    let mut b = Broker::unstarted(None, &[]);
    let listeners = format!(
        "PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{ssl_port}",
        b.kafka_port
    );
    b.extra = [
        "--listeners",
        &listeners,
        "--ssl-certificate-file",
        pem.to_str().unwrap(),
        "--ssl-key-file",
        key.to_str().unwrap(),
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    b.spawn();
    b
}

fn produce_and_fetch(s: &mut impl ReadWrite, topic: &str) {
    // Big enough that a fetch answer spans several TLS records.
    let value = vec![b'v'; 200_000];
    let records = support::batch(&[&value, b"small"], Compression::None);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records.clone())),
                ]),
        ]);
    let r: ProduceResponse = call(s, ApiKey::Produce, 9, &produce).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let fetch = support::fetch_request(topic, 0, 0);
    let r: FetchResponse = call(s, ApiKey::Fetch, 12, &fetch).unwrap();
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let got = p.records.clone().unwrap();
    // The batch as produced, byte for byte from its magic byte on (the
    // broker sets the base offset and the partition leader epoch).
    assert_eq!(got.len(), records.len());
    assert!(got[16..] == records[16..], "the batch came back changed");
}

#[test]
fn each_listener_names_its_own_addresses_and_tls_carries_produce_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::ca(dir.path());
    let ssl_port = free_port();
    let b = start(dir.path(), ssl_port, &[]);
    let plain = metadata_ports(&mut support::connect(b.kafka_port).stream);
    assert_eq!(plain, vec![(0, b.kafka_port as i32)]);
    let mut tls = tls_connect(ssl_port, client_config(&ca, None)).unwrap();
    assert_eq!(metadata_ports(&mut tls), vec![(0, ssl_port as i32)]);
    produce_and_fetch(&mut tls, "over-tls");
    let copied = b.metric("karnak_fetch_copied_bytes_total", &[]);
    assert!(copied >= 200_000.0, "TLS fetches are copied: {copied}");
    // What SSL wrote, PLAINTEXT reads.
    let r: ListOffsetsResponse = call(
        &mut support::connect(b.kafka_port).stream,
        ApiKey::ListOffsets,
        7,
        &ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("over-tls")))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ]),
        ]),
    )
    .unwrap();
    assert_eq!(r.topics[0].partitions[0].offset, 2);

    // The wrong protocol on either listener: that connection is closed, the
    // rest go on.
    let mut hello = TcpStream::connect(("127.0.0.1", b.kafka_port)).unwrap();
    hello
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    hello
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(matches!(hello.read(&mut byte), Ok(0) | Err(_)));
    let mut plain_on_tls = support::connect(ssl_port);
    let frame = plain_on_tls.frame(ApiKey::ApiVersions, 0, &[]);
    plain_on_tls.send_raw(&frame);
    // A TLS alert, then the end of the connection.
    let mut answer = Vec::new();
    plain_on_tls
        .stream
        .read_to_end(&mut answer)
        .expect("closed by the broker");
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "a TLS alert record: {answer:?}"
    );
    assert_eq!(metadata_ports(&mut tls), vec![(0, ssl_port as i32)]);
    let log = b.log();
    assert_eq!(
        log.matches("a TLS handshake on a PLAINTEXT listener")
            .count(),
        1,
        "{log}"
    );
    // Logged as the refused connection goes (the client may see it closed first).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.log().contains("TLS handshake failed") {
        assert!(Instant::now() < deadline, "{}", b.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn required_client_certificates_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::ca(dir.path());
    let (cpem, ckey) = certs::leaf(dir.path(), "client", "alice", true);
    let ssl_port = free_port();
    let b = start(
        dir.path(),
        ssl_port,
        &[
            "--ssl-client-auth",
            "required",
            "--ssl-truststore-file",
            ca.to_str().unwrap(),
        ],
    );
    // Without a certificate: refused (TLS 1.3 tells the client at its first read).
    let refused = tls_connect(ssl_port, client_config(&ca, None)).and_then(|mut s| {
        call::<_, MetadataResponse>(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default())
    });
    assert!(
        refused.is_err(),
        "a client without a certificate was served"
    );
    // With one the truststore's CA signed: served.
    let mut s = tls_connect(ssl_port, client_config(&ca, Some((&cpem, &ckey)))).unwrap();
    assert_eq!(metadata_ports(&mut s), vec![(0, ssl_port as i32)]);
    // One signed by another CA: refused.
    let other = tempfile::tempdir().unwrap();
    certs::ca(other.path());
    let (opem, okey) = certs::leaf(other.path(), "client", "mallory", true);
    let refused =
        tls_connect(ssl_port, client_config(&ca, Some((&opem, &okey)))).and_then(|mut s| {
            call::<_, MetadataResponse>(&mut s, ApiKey::Metadata, 12, &MetadataRequest::default())
        });
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
    drop(b);
}

#[test]
fn a_new_certificate_is_used_for_new_connections_and_old_ones_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::ca(dir.path());
    let ssl_port = free_port();
    let b = start(dir.path(), ssl_port, &[]);
    let peer_cert = |s: &Tls| s.conn.peer_certificates().unwrap()[0].to_vec();
    let mut before = tls_connect(ssl_port, client_config(&ca, None)).unwrap();
    let first = peer_cert(&before);
    // A new certificate and key in place of the old files.
    let fresh = dir.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(dir.path().join(f), fresh.join(f)).unwrap();
    }
    let (pem, key) = certs::leaf(&fresh, "server", "karnak-test-renewed", false);
    std::fs::copy(&key, dir.path().join("server.key")).unwrap();
    std::fs::copy(&pem, dir.path().join("server.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = tls_connect(ssl_port, client_config(&ca, None)).unwrap();
        if peer_cert(&s) != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(b.log().contains("TLS certificate reloaded"));
    // The connection opened before the change still works.
    assert_eq!(metadata_ports(&mut before), vec![(0, ssl_port as i32)]);
}

#[test]
fn tls_listeners_without_a_certificate_are_refused_at_start() {
    for listeners in ["SSL://127.0.0.1:{p}", "SASL_SSL://127.0.0.1:{p}"] {
        let mut b = Broker::unstarted(None, &[]);
        let l = listeners.replace("{p}", &b.kafka_port.to_string());
        b.extra = vec!["--listeners".into(), l];
        let from = b.launch();
        let err = b.wait_ready(from).unwrap_err();
        assert!(err.contains("--ssl-certificate-file"), "{err}");
    }
    // A SASL listener without a users file starts (users can be made with
    // AlterUserScramCredentials), and says so.
    let mut b = Broker::unstarted(None, &[]);
    b.extra = vec![
        "--listeners".into(),
        format!("SASL_PLAINTEXT://127.0.0.1:{}", b.kafka_port),
    ];
    b.spawn();
    assert!(b.log().contains("without --sasl-users-file"), "{}", b.log());
}
