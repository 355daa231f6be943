//! Full disks on real file systems the test makes itself: a loop-mounted
//! ext4 image (real block allocation, delayed allocation, fallocate, a
//! journal) and a size-limited tmpfs. Producing until ENOSPC answers
//! KAFKA_STORAGE_ERROR and acknowledges nothing torn; consumers, SQL and
//! the group coordinator keep answering; once DeleteRecords, retention or a
//! deleted topic frees space, produce resumes without a restart; and what
//! the broker reserved ahead (segment fallocate, index files) is given back.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_protocol::messages::*;

use crate::rig::{STORAGE_ERROR, batch, commit, committed, name, produce, read_all, read_from};
use crate::support::{self, Broker, Client};

/// A small file system mounted on a temp dir; unmounted on drop.
struct SmallDisk {
    mnt: tempfile::TempDir,
    /// The ext4 image's own dir (outside the mount).
    _image: Option<tempfile::TempDir>,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SmallDisk {
    /// An ext4 file system of `mib` MiB in an image file, loop-mounted (needs
    /// root and a loop device, as CI has).
    fn ext4(mib: u64) -> SmallDisk {
        let image = tempfile::tempdir().unwrap();
        let file = image.path().join("disk.ext4");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(mib << 20))
            .unwrap();
        let file = file.to_str().unwrap();
        // -m 0: no blocks reserved for root (the broker runs as root here).
        run("mkfs.ext4", &["-q", "-F", "-m", "0", file]);
        let mnt = tempfile::tempdir().unwrap();
        run("mount", &["-o", "loop", file, mnt.path().to_str().unwrap()]);
        SmallDisk {
            mnt,
            _image: Some(image),
        }
    }

    /// A tmpfs of `mib` MiB (pages are allocated on write, fallocate reserves).
    fn tmpfs(mib: u64) -> SmallDisk {
        let mnt = tempfile::tempdir().unwrap();
        let size = format!("size={mib}m");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &size,
                "tmpfs",
                mnt.path().to_str().unwrap(),
            ],
        );
        SmallDisk { mnt, _image: None }
    }

    fn path(&self) -> &Path {
        self.mnt.path()
    }

    /// Bytes available to the broker, as `df` shows them.
    fn available(&self) -> u64 {
        self.df("avail")
    }

    /// The file system's size, as `df` shows it.
    fn total(&self) -> u64 {
        self.df("size")
    }

    fn df(&self, field: &str) -> u64 {
        let out = Command::new("df")
            .args(["-B1", &format!("--output={field}")])
            .arg(self.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a broker that failed the test may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Acknowledged records per partition: offset to value.
type Acked = Vec<HashMap<i64, String>>;

/// Produces 64 KiB batches (acks=all) round-robin over the topic's
/// partitions until every partition has refused two in a row. Every answer
/// must be success or KAFKA_STORAGE_ERROR, and the broker must live.
fn fill(b: &Broker, c: &mut Client, topic: &str, acked: &mut Acked, round: &str) -> usize {
    let partitions = acked.len();
    let mut refused_in_a_row = vec![0; partitions];
    let mut refused = 0;
    for i in 0..20_000 {
        let p = i % partitions;
        if refused_in_a_row.iter().all(|&n| n >= 2) {
            return refused;
        }
        let values: Vec<String> = (0..4)
            .map(|r| format!("{round}-{i}-{r}-{}", "v".repeat(16 << 10)))
            .collect();
        match produce(c, topic, p as i32, -1, batch(&values, None)) {
            None => panic!("the broker died on a full disk: {}", b.log()),
            Some((0, base)) => {
                refused_in_a_row[p] = 0;
                for (r, v) in values.into_iter().enumerate() {
                    acked[p].insert(base + r as i64, v);
                }
            }
            Some((code, _)) => {
                assert_eq!(
                    code, STORAGE_ERROR,
                    "a full disk answers KAFKA_STORAGE_ERROR"
                );
                refused_in_a_row[p] += 1;
                refused += 1;
            }
        }
    }
    panic!("{topic}: 20,000 batches of 64 KiB never filled the disk");
}

/// Exactly the acknowledged records are readable, each batch CRC-checked:
/// nothing acknowledged lost, nothing refused half-written and visible.
fn assert_reads_exactly(c: &mut Client, topic: &str, acked: &Acked) {
    for (p, want) in acked.iter().enumerate() {
        let start = want.keys().min().copied().unwrap_or(0);
        let got = read_from(c, topic, p as i32, start);
        assert_eq!(got.len(), want.len(), "{topic}-{p}: records readable");
        assert!(
            got == *want,
            "{topic}-{p}: a readable record differs from what was acked"
        );
    }
}

/// Polls produce of one small batch until it succeeds (space freed by a
/// background deletion), failing after 20 s.
fn produce_resumes(b: &Broker, c: &mut Client, topic: &str, p: i32, what: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match produce(c, topic, p, -1, batch(&[format!("after {what}")], None)) {
            Some((0, offset)) => return offset,
            Some((code, _)) if code == STORAGE_ERROR => {}
            other => panic!("{topic}-{p} after {what}: {other:?}: {}", b.log()),
        }
        assert!(
            Instant::now() < deadline,
            "{topic}-{p}: produce did not resume within 20 s of {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sql_count(b: &Broker, topic: &str) -> Result<u64, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &b.sql_port.to_string(),
            "-U",
            "karnak",
        ])
        .args([
            "-d",
            "karnak",
            "-At",
            "-c",
            &format!("select count(*) from \"{topic}\""),
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

fn high_watermarks(c: &mut Client, topic: &str, partitions: usize) -> Vec<i64> {
    (0..partitions as i32)
        .map(|p| {
            let r: FetchResponse = c.call(ApiKey::Fetch, 12, &crate::rig::fetch(topic, p, 0, 0));
            r.responses[0].partitions[0].high_watermark
        })
        .collect()
}

fn try_create_topic(c: &mut Client, topic: &str) -> Option<i16> {
    let r: CreateTopicsResponse = c.try_call(
        ApiKey::CreateTopics,
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000),
    )?;
    Some(r.topics[0].error_code)
}

/// Every file under `dir`: (bytes allocated on disk, length).
fn allocation(dir: &Path) -> Vec<(PathBuf, u64, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.blocks() * 512, m.len()));
            }
        }
    }
    out
}

/// The data dir's file system filled by clients' produce, with the
/// default floor of free space (5 % of it): produce is refused before the
/// disk is full, and everything that is not a client's produce (committed
/// offsets, topic creation and deletion, config changes) goes on.
fn full_disk(disk: SmallDisk) {
    let data = disk.path().join("data");
    let mut b = Broker::start_in(
        Some(data.clone()),
        &[
            "--log-segment-bytes",
            "1048576",
            "--log-retention-check-interval-ms",
            "200",
            "--group-coordinator-shards",
            "2",
        ],
    );
    let mut c = b.connect();
    support::create_topic(&mut c, "fill", 2);
    support::create_topic(&mut c, "keep", 1);
    assert_eq!(
        produce(&mut c, "keep", 0, -1, batch(&["kept".into()], None)),
        Some((0, 0))
    );
    assert_eq!(commit(&mut c, "g", "keep", 1), Some(0));

    // 1. Full: refused with KAFKA_STORAGE_ERROR, nothing torn, reads go on.
    let mut acked: Acked = vec![HashMap::new(), HashMap::new()];
    let refused = fill(&b, &mut c, "fill", &mut acked, "a");
    assert!(refused >= 4);
    assert!(b.metric("karnak_log_dir_produce_refused_total", &[]) >= refused as f64);
    let floor = disk.total() / 20;
    let left = disk.available();
    assert!(
        left + (1 << 20) >= floor && left < floor + (2 << 20),
        "produce stopped at the floor ({floor} bytes), with {left} bytes left"
    );
    assert_reads_exactly(&mut c, "fill", &acked);
    let total = acked.iter().map(HashMap::len).sum::<usize>() as u64;
    assert_eq!(
        sql_count(&b, "fill"),
        Ok(total),
        "SQL reads the full disk's topic"
    );
    assert_eq!(
        committed(&mut c, "g", "keep"),
        1,
        "committed offsets are read"
    );
    // What is not a client's produce has the room kept above the floor.
    assert_eq!(
        commit(&mut c, "g", "keep", 2),
        Some(0),
        "offsets are committed"
    );
    assert_eq!(committed(&mut c, "g", "keep"), 2);
    assert_eq!(
        try_create_topic(&mut c, "on-full"),
        Some(0),
        "topics are created"
    );
    let md: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("fill"))),
        ])),
    );
    for p in &md.topics[0].partitions {
        assert_eq!(
            p.error_code, 0,
            "ENOSPC is not a failed disk: the partition stays online"
        );
    }

    // 2. DeleteRecords frees the sealed segments: produce resumes.
    let hw = high_watermarks(&mut c, "fill", 2);
    for p in 0..2 {
        assert_eq!(
            support::delete_records(&mut c, "fill", p, hw[p as usize]).0,
            0
        );
        acked[p as usize].clear();
    }
    for p in 0..2 {
        let at = produce_resumes(&b, &mut c, "fill", p, "DeleteRecords");
        assert_eq!(at, hw[p as usize], "fill-{p}: offsets stay dense");
        acked[p as usize].insert(at, "after DeleteRecords".into());
    }

    // 3. Full again; retention frees it.
    fill(&b, &mut c, "fill", &mut acked, "b");
    assert_reads_exactly(&mut c, "fill", &acked);
    let (code, msg) =
        support::alter_configs(&mut c, 2, "fill", &[("retention.bytes", 0, Some("1"))]);
    assert_eq!(code, 0, "{msg}: {}", b.log());
    for p in 0..2 {
        produce_resumes(&b, &mut c, "fill", p, "retention");
    }
    let (code, msg) = support::alter_configs(&mut c, 2, "fill", &[("retention.bytes", 1, None)]);
    assert_eq!(code, 0, "{msg}: {}", b.log());

    // 4. Full again; deleting the topic frees it.
    let mut acked: Acked = vec![HashMap::new(), HashMap::new()];
    fill(&b, &mut c, "fill", &mut acked, "c");
    assert_eq!(crate::rig::delete_topic(&mut c, "fill"), 0);
    produce_resumes(&b, &mut c, "keep", 0, "a deleted topic");
    assert_eq!(
        read_all(&mut c, "keep", 0).get(&0).map(String::as_str),
        Some("kept")
    );

    // 5. What was reserved ahead is given back: after a clean stop no file
    // holds more blocks than its length rounds up to (a reservation left
    // behind would count against the disk with nothing in it).
    assert!(b.stop(), "clean shutdown");
    for (path, allocated, len) in allocation(&data) {
        assert!(
            allocated <= len.next_multiple_of(4096) + 4096,
            "{}: {allocated} bytes allocated for {len} bytes",
            path.display()
        );
    }
    b.spawn();
    let mut c = b.connect();
    let keep = read_all(&mut c, "keep", 0);
    assert_eq!(keep.get(&0).map(String::as_str), Some("kept"));
    assert_eq!(committed(&mut c, "g", "keep"), 2);
}

/// With no floor (`--log-dir-min-free-bytes 0`) the writes themselves meet
/// ENOSPC: produce answers KAFKA_STORAGE_ERROR with nothing torn, reads and
/// SQL go on, a metadata write that finds the disk full waits for space
/// rather than stopping the metadata log for good, and once an operator
/// frees space everything resumes without a restart.
/// `metadata_meets_enospc`: tmpfs refuses every write once full, so the
/// metadata write must be seen waiting; ext4 may still fit a small write
/// (its reserved clusters), so there it need not.
fn full_disk_without_floor(disk: SmallDisk, metadata_meets_enospc: bool) {
    use std::io::Write;
    // What the operator will delete: 4 MiB, written and synced.
    let ballast = disk.path().join("ballast");
    let mut f = std::fs::File::create(&ballast).unwrap();
    f.write_all(&vec![1u8; 4 << 20]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let mut b = Broker::start_in(
        Some(disk.path().join("data")),
        &[
            "--log-segment-bytes",
            "1048576",
            "--log-dir-min-free-bytes",
            "0",
        ],
    );
    let mut c = b.connect();
    support::create_topic(&mut c, "fill", 1);
    assert_eq!(commit(&mut c, "g", "fill", 0), Some(0));
    let mut acked: Acked = vec![HashMap::new()];
    fill(&b, &mut c, "fill", &mut acked, "a");
    // Up to a refused batch and a failed Arrow face build (deleted) may be free again.
    assert!(
        disk.available() < 2 << 20,
        "the disk is full: {}",
        disk.available()
    );
    assert_reads_exactly(&mut c, "fill", &acked);
    let total = acked[0].len() as u64;
    assert_eq!(sql_count(&b, "fill"), Ok(total), "SQL reads on a full disk");
    assert_eq!(committed(&mut c, "g", "fill"), 0);
    // Not a block left (the batches stopped up to 64 KiB short of full).
    let topoff = disk.path().join("topoff");
    let mut f = std::fs::File::create(&topoff).unwrap();
    while f
        .write_all(&[2u8; 4096])
        .and_then(|_| f.sync_data())
        .is_ok()
    {}
    drop(f);
    let _ = commit(&mut c, "g", "fill", 1).expect("the broker answers a commit");
    // A topic created now: its metadata write meets ENOSPC and waits.
    let port = b.kafka_port;
    let creating = std::thread::spawn(move || {
        let mut c = support::connect(port);
        try_create_topic(&mut c, "while-full")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while metadata_meets_enospc && b.metric("karnak_metadata_disk_full_waits_total", &[]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no metadata write met the full disk: {}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&ballast).unwrap();
    std::fs::remove_file(&topoff).unwrap();
    let answered = creating.join().unwrap();
    assert!(
        answered.is_some(),
        "the broker answered CreateTopics: {}",
        b.log()
    );
    let after = produce_resumes(&b, &mut c, "fill", 0, "the operator freed space");
    assert_eq!(after as u64, total, "offsets stay dense");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_create_topic(&mut c, "after-full") {
            Some(0) => break,
            other => assert!(
                Instant::now() < deadline,
                "the metadata log did not come back: {other:?}: {}",
                b.log()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(commit(&mut c, "g", "fill", 5), Some(0));
    // The broker's own rebuildable files (Arrow faces) must not have
    // taken the space the operator freed: shutdown writes its snapshots.
    let avail = disk.available();
    assert!(b.stop(), "clean shutdown ({avail} bytes free): {}", b.log());
    b.spawn();
    let mut c = b.connect();
    assert_eq!(read_all(&mut c, "fill", 0).len() as u64, total + 1);
    assert_eq!(committed(&mut c, "g", "fill"), 5);
}

#[test]
fn a_full_ext4_disk_refuses_produce_keeps_reads_and_recovers_without_restart() {
    full_disk(SmallDisk::ext4(48));
}

#[test]
fn a_full_tmpfs_refuses_produce_keeps_reads_and_recovers_without_restart() {
    full_disk(SmallDisk::tmpfs(48));
}

#[test]
fn enospc_on_ext4_refuses_produce_and_metadata_waits_for_space() {
    full_disk_without_floor(SmallDisk::ext4(32), false);
}

#[test]
fn enospc_on_tmpfs_refuses_produce_and_metadata_waits_for_space() {
    full_disk_without_floor(SmallDisk::tmpfs(32), true);
}

/// An index entry's page gets its blocks before the mapped write touches
/// it: on a disk without a block to spare, the entry is left out. Without
/// that, the write into the preallocated (sparse) index file raises SIGBUS
/// and kills the process, here this test's own.
#[test]
fn index_entries_on_a_full_disk_are_left_out_instead_of_faulting() {
    use karnak_storage::{Log, LogConfig};
    use std::io::Write;

    let disk = SmallDisk::tmpfs(1);
    let dir = disk.path().join("t-0");
    std::fs::create_dir(&dir).unwrap();
    // Small segments with an index entry per batch: rolls map new indexes often.
    let cfg = LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 0,
        ..Default::default()
    };
    let log = Log::open(&dir, "t", 0, cfg.clone()).unwrap();
    // Ballast takes the rest of the disk, then gives it back a page at a
    // time: sooner or later a batch's data fits and its index page does not.
    let mut ballast = std::fs::File::create(disk.path().join("ballast")).unwrap();
    let mut len = 0u64;
    while ballast.write_all(&[1u8; 4096]).is_ok() {
        len += 4096;
    }
    let value = [7u8; 3000];
    let (mut acked, mut refused) = (0i64, 0);
    let ts = 1_700_000_000_000;
    while len >= 4096 {
        len -= 4096;
        ballast.set_len(len).unwrap();
        for _ in 0..2 {
            let b = karnak_storage::test_support::build_batch(ts + acked, &[&value]);
            match log.append(&bytes::Bytes::from(b), 0, None) {
                Ok(info) => {
                    assert_eq!(info.base_offset, acked, "offsets stay dense");
                    acked += 1;
                }
                Err(e) => {
                    assert!(format!("{e:?}").contains("StorageFull"), "{e:?}");
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 0, "the disk never filled");
    assert!(acked > 100, "{acked} batches written");
    assert_eq!(log.log_end_offset(), acked);
    drop(log);
    drop(ballast);
    std::fs::remove_file(disk.path().join("ballast")).unwrap();
    let log = Log::open(&dir, "t", 0, cfg).unwrap();
    assert_eq!(
        log.log_end_offset(),
        acked,
        "every acknowledged batch is there after a reopen"
    );
}
