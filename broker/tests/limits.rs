//! The broker's own bounds against the real binary: `max.connections`
//! closes new connections and keeps serving the open ones,
//! `connections.max.idle.ms` closes idle ones (not one waiting on a long
//! poll), a request sent too slowly is cut off, and
//! `queued.max.request.bytes` holds memory flat while a thousand clients
//! send 100 MB produce requests at once.

mod support;

use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::Compression;
use support::{Broker, Client, batch, create_topic, try_produce};

fn api_versions(c: &mut Client) -> Option<ApiVersionsResponse> {
    c.try_call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
}

/// Polls `f` until it holds, failing the test after `secs`.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn past_max_connections_new_connections_are_closed_and_open_ones_served() {
    let b = Broker::start(&["--max-connections", "3"]);
    let mut open: Vec<Client> = (0..3).map(|_| b.connect()).collect();
    for c in &mut open {
        assert!(api_versions(c).is_some());
    }
    let mut fourth = b.connect();
    let t = Instant::now();
    assert!(fourth.closed_by_broker(), "a fourth connection was served");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the fourth connection was left hanging, not closed"
    );
    for c in &mut open {
        assert!(api_versions(c).is_some(), "an open connection was dropped");
    }
    assert!(
        b.metric(
            "karnak_connection_errors_total",
            &["reason=\"max_connections\""]
        ) >= 1.0
    );
    // A place freed by a close is taken by the next connection.
    open.pop();
    eventually(10, "a new connection served after a close", || {
        api_versions(&mut b.connect()).is_some()
    });
}

/// A client that closes its connection while its fetch waits on a long
/// poll is gone at once, as Kafka drops it: its place under
/// max.connections is not held for the rest of the client's wait.
#[test]
fn a_client_gone_during_a_long_poll_frees_its_place_at_once() {
    let b = Broker::start(&["--max-connections", "2"]);
    let mut setup = b.connect();
    create_topic(&mut setup, "gone", 1);
    drop(setup);
    let mut polling = b.connect();
    assert!(api_versions(&mut polling).is_some());
    let mut body = BytesMut::new();
    support::fetch_request("gone", 0, 60_000)
        .encode(&mut body, 12)
        .unwrap();
    let frame = polling.frame(ApiKey::Fetch, 12, &body);
    polling.send_raw(&frame);
    // The fetch is parked (nothing to read for a minute): then the client goes.
    eventually(10, "the fetch parked", || {
        b.metric("karnak_fetch_purgatory_size", &[]) >= 1.0
    });
    drop(polling);
    // Before, the place was held for the poll's whole minute.
    eventually(
        10,
        "two new connections served after the poller left",
        || {
            let mut two: Vec<Client> = (0..2).map(|_| b.connect()).collect();
            two.iter_mut().all(|c| api_versions(c).is_some())
        },
    );
}

fn empty_fetch(c: &mut Client, topic: &str, max_wait_ms: i32) -> FetchResponse {
    c.call(
        ApiKey::Fetch,
        12,
        &support::fetch_request(topic, 0, max_wait_ms),
    )
}

#[test]
fn idle_connections_are_closed_and_busy_ones_kept() {
    let b = Broker::start(&["--connections-max-idle-ms", "500"]);
    let mut setup = b.connect();
    create_topic(&mut setup, "idle", 1);
    drop(setup);

    let mut idle = b.connect();
    assert!(api_versions(&mut idle).is_some());
    let t = Instant::now();
    assert!(idle.closed_by_broker());
    let after = t.elapsed();
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(10)).contains(&after),
        "closed after {after:?}, not about 500 ms"
    );

    // A long poll longer than the idle bound is not idleness: its answer comes.
    let mut polling = b.connect();
    let t = Instant::now();
    let resp = empty_fetch(&mut polling, "idle", 1500);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert!(t.elapsed() >= Duration::from_millis(1400));

    // A client that keeps asking is never idle.
    let mut busy = b.connect();
    let until = Instant::now() + Duration::from_millis(2000);
    while Instant::now() < until {
        assert!(
            api_versions(&mut busy).is_some(),
            "a busy connection was closed"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(b.metric("karnak_connection_errors_total", &["reason=\"idle\""]) >= 1.0);
}

#[test]
fn a_request_trickled_in_too_slowly_is_cut_off() {
    let b = Broker::start(&["--request-read-timeout-ms", "500"]);
    let mut slow = b.connect();
    // Claims 1,000 bytes, then sends one every 100 ms (a slowloris).
    let mut head = 1000i32.to_be_bytes().to_vec();
    head.extend_from_slice(&[0; 10]);
    slow.send_raw(&head);
    let t = Instant::now();
    let closed = loop {
        std::thread::sleep(Duration::from_millis(100));
        if slow.stream.write_all(&[0]).is_err() {
            break t.elapsed();
        }
        if t.elapsed() > Duration::from_secs(10) {
            panic!("a request trickled in for 10 s and was not cut off");
        }
    };
    assert!(
        closed >= Duration::from_millis(450),
        "cut off after {closed:?}"
    );
    eventually(10, "the cut counted", || {
        b.metric(
            "karnak_connection_errors_total",
            &["reason=\"request_timeout\""],
        ) >= 1.0
    });
    // Everyone else is served as before.
    assert!(api_versions(&mut b.connect()).is_some());
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// A produce request of `partitions` batches of one `value_bytes` record each.
fn big_produce(c: &mut Client, topic: &str, partitions: i32, value_bytes: usize) -> Bytes {
    let one = batch(&[&vec![b'x'; value_bytes]], Compression::None);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(
                    (0..partitions)
                        .map(|p| {
                            produce_request::PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(one.clone()))
                        })
                        .collect(),
                ),
        ]);
    let mut body = BytesMut::new();
    req.encode(&mut body, 9).unwrap();
    c.frame(ApiKey::Produce, 9, &body).freeze()
}

#[test]
fn a_thousand_100mb_produce_requests_stay_within_the_request_memory_bound() {
    const CLIENTS: usize = 1000;
    const BUDGET: u64 = 64 << 20;
    let b = Broker::start(&["--queued-max-request-bytes", &BUDGET.to_string()]);
    let pid = b.child.as_ref().unwrap().id();
    let mut admin = b.connect();
    create_topic(&mut admin, "big", 100);
    // 100 partitions x one 1,000,000-byte record: a 100 MB request.
    let request = big_produce(&mut admin, "big", 100, 1_000_000);
    assert!(request.len() > 100_000_000);

    let before = rss_bytes(pid);
    let mut clients: Vec<(std::net::TcpStream, usize)> = (0..CLIENTS)
        .map(|_| {
            let s = std::net::TcpStream::connect(("127.0.0.1", b.kafka_port)).unwrap();
            // Send buffers of 256 KiB (512 KiB in the kernel's count) keep
            // the test's own memory down; smaller ones would slow every
            // sender to a delayed ACK per buffer.
            rustix::net::sockopt::set_socket_send_buffer_size(s.as_fd(), 256 << 10).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, 0)
        })
        .collect();
    // Every client writes as much of its request as the broker takes, for
    // 10 s or until 3 GiB went (the kernel's buffers take a third of it): the broker reads one large request at a
    // time, its memory sampled all along.
    let started = Instant::now();
    let (mut pushed, mut peak, mut samples) = (0u64, 0u64, 0);
    let mut last_sample = Instant::now();
    while started.elapsed() < Duration::from_secs(10) && pushed < 3 << 30 {
        let mut moved = 0;
        for (s, sent) in clients.iter_mut() {
            if *sent == request.len() {
                continue;
            }
            match s.write(&request[*sent..]) {
                Ok(n) => {
                    *sent += n;
                    moved += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("a client's connection failed: {e}\n{}", b.log()),
            }
        }
        pushed += moved as u64;
        if last_sample.elapsed() >= Duration::from_millis(20) {
            peak = peak.max(rss_bytes(pid));
            samples += 1;
            last_sample = Instant::now();
        }
        if moved == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(samples >= 10, "{samples} samples");
    // Memory: the budget, the one request being read (larger than the
    // budget: it is read alone, in a buffer of its size), and a 64 KiB first
    // read per connection, plus a margin for tasks and sockets.
    let grown = peak.saturating_sub(before);
    let bound =
        BUDGET + request.len() as u64 + CLIENTS as u64 * ((64 << 10) + (16 << 10)) + (32 << 20);
    assert!(
        grown < bound,
        "RSS grew {} MiB with {CLIENTS} clients (bound {} MiB); {} MiB were pushed",
        grown >> 20,
        bound >> 20,
        pushed >> 20
    );
    assert!(
        b.metric("karnak_queued_request_waits_total", &[]) >= 100.0,
        "the clients did not wait for the budget"
    );
    assert!(b.metric("karnak_queued_request_bytes", &[]) as u64 <= BUDGET);
    eprintln!(
        "RSS grew {} MiB at most (bound {} MiB) while {CLIENTS} clients pushed {} MiB in {:?}",
        grown >> 20,
        bound >> 20,
        pushed >> 20,
        started.elapsed()
    );
    // Small requests are not held behind the large ones.
    let mut other = b.connect();
    let t = Instant::now();
    assert_eq!(
        try_produce(
            &mut other,
            "big",
            0,
            1,
            batch(&[b"small"], Compression::None)
        )
        .map(|r| r.0),
        Some(0)
    );
    assert!(t.elapsed() < Duration::from_secs(5));

    // The last three clients (queued behind the others) finish their
    // requests while the others hang up: each is read and answered in turn.
    let mut finishing: Vec<_> = clients.drain(CLIENTS - 3..).collect();
    for (s, _) in clients {
        // Reset, as a killed client's kernel would once it gives up: a plain
        // close with unsent bytes can leave the broker waiting up to the
        // read timeout for an end that comes late.
        rustix::net::sockopt::set_socket_linger(s.as_fd(), Some(Duration::ZERO)).unwrap();
    }
    let handles: Vec<_> = finishing
        .drain(..)
        .map(|(mut s, sent)| {
            let request = request.clone();
            std::thread::spawn(move || {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.write_all(&request[sent..])
                    .map_err(|e| format!("writing the request: {e}"))?;
                let mut c = support::client_on(s);
                let mut resp = c.read_frame().ok_or("no produce response")?;
                let _correlation = bytes::Buf::get_i32(&mut resp);
                let _tagged = bytes::Buf::get_u8(&mut resp);
                let r =
                    <ProduceResponse as kafka_protocol::protocol::Decodable>::decode(&mut resp, 9)
                        .unwrap();
                Ok::<_, String>(
                    r.responses[0]
                        .partition_responses
                        .iter()
                        .filter(|p| p.error_code == 0)
                        .count(),
                )
            })
        })
        .collect();
    for h in handles {
        match h.join().unwrap() {
            Ok(n) => assert_eq!(n, 100, "every partition appended"),
            Err(e) => panic!("{e}\n{}", b.log()),
        }
    }
    eventually(10, "the budget released", || {
        b.metric("karnak_queued_request_bytes", &[]) == 0.0
    });
}

/// Requests whose arrays claim billions of elements (found by the `request`
/// and `subscription` fuzz targets): each asked kafka-protocol for tens of
/// GB up front and aborted the broker. Now each is refused or answered and
/// the broker serves on.
#[test]
fn requests_claiming_billions_of_elements_do_not_stop_the_broker() {
    let b = Broker::start(&["--group-initial-rebalance-delay-ms", "0"]);
    // IncrementalAlterConfigs v0, resources array of 0x01000000... entries.
    let mut c = b.connect();
    let body = [0x00, 0x2c, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0, 0, 0xff];
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    c.send_raw(&frame);
    let _ = c.read_frame();
    // A member whose consumer subscription claims 0x68680a0a topics, then
    // an OffsetDelete, which reads the members' subscriptions.
    let mut c = b.connect();
    let mut join = JoinGroupRequest::default()
        .with_group_id(StrBytes::from_static_str("g").into())
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            join_group_request::JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"hhhh\n\n")),
        ]);
    let first: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join);
    join.member_id = first.member_id;
    let joined: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &join);
    assert_eq!(joined.error_code, 0, "joined the group");
    let delete = OffsetDeleteRequest::default()
        .with_group_id(StrBytes::from_static_str("g").into())
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let _: Option<OffsetDeleteResponse> = c.try_call(ApiKey::OffsetDelete, 0, &delete);
    let mut fresh = b.connect();
    assert!(
        api_versions(&mut fresh).is_some(),
        "the broker stopped:\n{}",
        b.log()
    );
    assert!(!b.log().contains("memory allocation of"));
}

/// This process's open files under `dir`.
fn files_open_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
                .count()
        })
        .unwrap_or(0)
}

/// A broker embedded in a process that goes on (the simulation, the fuzz
/// harness, a test) lets go of everything when it stops: its timers (flush,
/// retention, faces, ISR checks) used to run on after shutdown, holding
/// the broker and every segment file open; the fuzz harness, which starts
/// a broker per thousand inputs, ran out of file descriptors.
#[test]
fn an_embedded_broker_closes_every_file_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_connect, connections) = tokio::sync::mpsc::channel(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let args = karnak_broker::Args {
        data_dir: Some(dir.path().to_path_buf()),
        kafka_addr: Some(([127, 0, 0, 1], 9092).into()),
        advertised_kafka_addr: Some("127.0.0.1:9092".into()),
        sql_enabled: Some(false),
        group_coordinator_shards: Some(2),
        ..Default::default()
    };
    let handle = rt.handle().clone();
    let broker = std::thread::spawn(move || {
        handle.block_on(karnak_broker::run_embedded(
            args,
            karnak_broker::Embedded {
                connections,
                cluster_connections: None,
                shutdown: Box::pin(async move {
                    let _ = stopped.await;
                }),
            },
        ))
    });
    eventually(30, "the broker opened its logs", || {
        files_open_under(dir.path()) > 0
    });
    stop.send(()).unwrap();
    // Promptly: a timer that ignored the stop would hold shutdown until
    // it is aborted (30 s).
    eventually(20, "the broker stopped", || broker.is_finished());
    broker.join().unwrap().unwrap();
    eventually(10, "every file of the stopped broker closed", || {
        files_open_under(dir.path()) == 0
    });
}
