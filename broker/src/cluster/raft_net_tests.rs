//! Three metadata voters in one process, each with its own store in a temp
//! dir and its own TCP listener on loopback: they elect a leader, replicate
//! commands, survive losing the leader, and refuse peers that are not theirs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use karnak_coordinator::metadata::{
    MetadataCommand, MetadataRaft, MetadataReply, MetadataStateMachine, RaftLogStore,
};
use openraft::{BasicNode, Config, Raft};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::raft_net::{Identity, TcpNetwork, serve};

struct Node {
    raft: Raft<MetadataRaft>,
    sm: MetadataStateMachine,
    controller: Arc<super::controller::Controller>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(
    id: u64,
    dir: &std::path::Path,
    listener: TcpListener,
    voters: &BTreeMap<u64, String>,
) -> Node {
    let config = Config {
        cluster_name: "karnak-test".into(),
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    };
    let me = Identity {
        cluster_id: "test-cluster".into(),
        node_id: id,
        voters: Arc::new(voters.clone()),
        tls: None,
    };
    let log = RaftLogStore::open(&dir.join("raft")).unwrap();
    let sm = MetadataStateMachine::open(&dir.join("raft")).unwrap();
    let raft = Raft::new(
        id,
        Arc::new(config.validate().unwrap()),
        TcpNetwork::new(me.clone()),
        log,
        sm.clone(),
    )
    .await
    .unwrap();
    let controller = Arc::new(super::controller::Controller::new(
        raft.clone(),
        me,
        &sm,
        Duration::from_secs(2),
        Duration::from_millis(250),
        Default::default(),
    ));
    let server = tokio::spawn(serve(
        crate::peer_net::ClusterAcceptor::Tcp(listener),
        controller.clone(),
    ));
    Node {
        raft,
        sm,
        controller,
        server,
    }
}

async fn leader_of(nodes: &BTreeMap<u64, Node>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in nodes.values() {
            if let Some(l) = n.raft.metrics().borrow().current_leader
                && nodes.contains_key(&l)
            {
                return l;
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn converged(
    nodes: &BTreeMap<u64, Node>,
    what: impl Fn(&karnak_coordinator::metadata::ClusterMetadata) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in nodes.values() {
        while !what(&n.sm.current().await) {
            assert!(
                Instant::now() < deadline,
                "a voter never applied the change"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_and_survive_losing_the_leader() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, BasicNode::new(l.local_addr().unwrap().to_string()));
        listeners.push(l);
    }
    let voters: BTreeMap<u64, String> = members
        .iter()
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect();
    let mut nodes = BTreeMap::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        nodes.insert(id, start(id, dirs[i].path(), l, &voters).await);
    }
    nodes[&1].raft.initialize(members.clone()).await.unwrap();
    let leader = leader_of(&nodes).await;
    let write =
        |raft: Raft<MetadataRaft>, cmd| async move { raft.client_write(cmd).await.map(|r| r.data) };
    for b in 1..=3 {
        let r = write(
            nodes[&leader].raft.clone(),
            MetadataCommand::RegisterBroker {
                id: b,
                incarnation: [b as u8; 16],
                listeners: vec![],
                rack: None,
                unclean_shutdown: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(r, Ok(MetadataReply::Done));
    }
    converged(&nodes, |m| m.brokers.len() == 3).await;

    // The leader goes; the other two elect one and keep committing.
    let gone = nodes.remove(&leader).unwrap();
    gone.server.abort();
    gone.raft.shutdown().await.unwrap();
    let next = leader_of(&nodes).await;
    assert_ne!(next, leader);
    let r = write(
        nodes[&next].raft.clone(),
        MetadataCommand::AllocateIdBlock {
            sequencer: "pid".into(),
            size: 10,
            from: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(r, Ok(MetadataReply::IdBlock { first: 0 }));
    converged(&nodes, |m| m.id_leases.get("pid") == Some(&10)).await;
    for n in nodes.values() {
        n.server.abort();
        n.raft.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn strangers_and_garbage_are_refused_without_harming_the_voter() {
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let voters = BTreeMap::from([(1u64, addr.to_string())]);
    let node = start(1, dir.path(), l, &voters).await;
    node.raft
        .initialize(BTreeMap::from([(1u64, BasicNode::new(addr.to_string()))]))
        .await
        .unwrap();
    // Another cluster's hello is answered with a refusal.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hello = br#"{"Hello":{"cluster_id":"other","from":1}}"#;
    s.write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(hello).await.unwrap();
    let len = s.read_u32().await.unwrap() as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("Err") && text.contains("other"), "{text}");
    // A node id that is not a voter, then garbage, then an absurd length:
    // each connection is closed, and the voter keeps committing.
    for frame in [
        br#"{"Hello":{"cluster_id":"test-cluster","from":9}}"#.to_vec(),
        b"not json at all".to_vec(),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&frame).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .unwrap();
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(
        n, 0,
        "an absurd frame length gets the connection closed, nothing else"
    );
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();
    let r = node
        .raft
        .client_write(MetadataCommand::AllocateIdBlock {
            sequencer: "s".into(),
            size: 1,
            from: 0,
        })
        .await
        .unwrap()
        .data;
    assert_eq!(r, Ok(MetadataReply::IdBlock { first: 0 }));
    node.server.abort();
    node.raft.shutdown().await.unwrap();
}

/// A probe (a hello, then the connection closed) does not make the probed
/// node look back: when it did, each look answered the last and three
/// idle brokers dialled each other about a thousand times a second. A
/// closed connection that carried requests does make it look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_is_not_answered_with_a_probe() {
    use karnak_coordinator::metadata::Listener;
    use karnak_coordinator::metadata::wire::{RaftRequest, RaftResponse, read_frame, write_frame};
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // Broker 2 is a listener counting the dials it gets.
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let voters = BTreeMap::from([
        (1u64, addr.to_string()),
        (2, peer.local_addr().unwrap().to_string()),
    ]);
    let node = start(1, dir.path(), l, &voters).await;
    node.raft
        .initialize(BTreeMap::from([(1u64, BasicNode::new(addr.to_string()))]))
        .await
        .unwrap();
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();
    let register = MetadataCommand::RegisterBroker {
        id: 2,
        incarnation: [2; 16],
        listeners: vec![Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 1,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: None,
        unclean_shutdown: false,
    };
    for cmd in [register, MetadataCommand::UnfenceBroker { id: 2 }] {
        let done = node.controller.propose(cmd).await.unwrap();
        assert!(done.result.is_ok(), "{done:?}");
    }
    let connect_as_2 = || async {
        let mut s = tokio::io::BufReader::new(TcpStream::connect(addr).await.unwrap());
        let hello = RaftRequest::Hello {
            cluster_id: "test-cluster".into(),
            from: 2,
        };
        write_frame(&mut s, &hello).await.unwrap();
        let answer: RaftResponse = read_frame(&mut s).await.unwrap();
        assert!(matches!(answer, RaftResponse::Hello(Ok(()))), "{answer:?}");
        s
    };
    drop(connect_as_2().await);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), peer.accept())
            .await
            .is_err(),
        "a probe of node 1 made it dial broker 2"
    );
    let mut s = connect_as_2().await;
    write_frame(&mut s, &RaftRequest::ReadIndex).await.unwrap();
    let answer: RaftResponse = read_frame(&mut s).await.unwrap();
    assert!(
        matches!(answer, RaftResponse::ReadIndex(Ok(_))),
        "{answer:?}"
    );
    drop(s);
    tokio::time::timeout(Duration::from_secs(5), peer.accept())
        .await
        .expect("a closed connection that carried requests makes node 1 dial broker 2")
        .unwrap();
    node.server.abort();
    node.raft.shutdown().await.unwrap();
}

/// openraft asks for a new client per read-index confirmation: the
/// clients of one network share their connections (one dial for many
/// calls in turn), and a kept connection the peer closed meanwhile is
/// replaced by a dial within the same call.
#[tokio::test]
async fn clients_in_turn_share_one_connection() {
    use karnak_coordinator::metadata::wire::{RaftRequest, RaftResponse, read_frame, write_frame};
    use openraft::network::RaftNetworkFactory;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // A peer answering every read index, closing its connection on "close".
    let (close_tx, mut close_rx) = tokio::sync::mpsc::channel::<()>(1);
    let counted = accepted.clone();
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut s = tokio::io::BufReader::new(s);
            let _: RaftRequest = read_frame(&mut s).await.unwrap();
            write_frame(&mut s, &RaftResponse::Hello(Ok(())))
                .await
                .unwrap();
            loop {
                tokio::select! {
                    // A close asked for before a request came is done first.
                    biased;
                    _ = close_rx.recv() => break,
                    r = read_frame::<RaftRequest>(&mut s) => {
                        if r.is_err() { break; }
                        write_frame(&mut s, &RaftResponse::ReadIndex(Ok(7))).await.unwrap();
                    }
                }
            }
        }
    });
    let me = Identity {
        cluster_id: "test-cluster".into(),
        node_id: 2,
        voters: Arc::new(BTreeMap::from([(1u64, addr.clone())])),
        tls: None,
    };
    let mut net = TcpNetwork::new(me);
    let node = BasicNode::new(addr.clone());
    let read_index = |mut p: super::raft_net::TcpPeer| async move {
        let r = p.call(RaftRequest::ReadIndex, Duration::from_secs(5)).await;
        assert!(matches!(r, Ok(RaftResponse::ReadIndex(Ok(7)))));
    };
    for _ in 0..5 {
        read_index(net.new_client(1, &node).await).await;
    }
    let dials = || accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(dials(), 1, "five clients in turn, one connection");
    close_tx.send(()).await.unwrap();
    read_index(net.new_client(1, &node).await).await;
    assert_eq!(dials(), 2, "the closed connection replaced by a dial");
    server.abort();
}
