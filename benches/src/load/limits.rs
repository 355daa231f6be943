//! What the machine allows, measured in the same run as the load: every
//! figure in `benches/RESULTS.md` sits next to these.
//!
//! - disk: sequential 1 MiB writes to the data dir with `fdatasync` after
//!   each, and 4 KiB append + `fdatasync` latency (what a group commit costs)
//! - page cache: writing 1 GiB without fsync, into new pages and again over
//!   the same cached pages (what the broker's append costs in CPU), and
//!   reading back a file that was just written
//! - loopback TCP: one connection, 1 MiB writes, as fast as read, with the
//!   sender's and the receiver's CPU seconds per GB (the floor under a
//!   broker's produce and fetch cost on loopback)
//! - CRC32C: bytes/s over a buffer in cache (what batch validation costs)

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::{Percentiles, thread_cpu_seconds};

/// Runs every measurement for about `seconds` each; returns a JSON object.
pub fn measure(dir: &Path, seconds: f64) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let budget = Duration::from_secs_f64(seconds.max(0.2));
    let (write_mbps, file_bytes) = disk_write(dir, budget)?;
    let read_mbps = page_cache_read(dir, file_bytes)?;
    let [cache_new, cache_over] = page_cache_write(dir)?;
    let fsync = fsync_latency(dir, budget)?;
    let loopback = loopback_tcp(budget)?;
    let crc = crc32c_rate(budget);
    Ok(json!({
        "disk_write_fdatasync_MBps": round1(write_mbps),
        "page_cache_read_MBps": round1(read_mbps),
        "page_cache_write_MBps": round1(cache_new.0),
        "page_cache_write_core_s_per_GB": round3(cache_new.1),
        "page_cache_overwrite_MBps": round1(cache_over.0),
        "page_cache_overwrite_core_s_per_GB": round3(cache_over.1),
        "loopback_sender_core_s_per_GB": round3(loopback.1),
        "loopback_receiver_core_s_per_GB": round3(loopback.2),
        "fdatasync_4k_per_s": fsync.0,
        "fdatasync_4k_p50_ms": fsync.1.p50_ms(),
        "fdatasync_4k_p99_ms": fsync.1.p99_ms(),
        "loopback_tcp_MBps": round1(loopback.0),
        "crc32c_MBps": round1(crc),
    }))
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn create_truncated(path: &Path) -> anyhow::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// 1 GiB in 1 MiB writes with no fsync, then the same again over the pages
/// now cached, then removed: the CPU a write into the page cache costs when
/// it needs fresh pages (on a VM, memory the host may have to back first)
/// and when the pages are already there. Returns MB/s and core-s/GB of each.
fn page_cache_write(dir: &Path) -> anyhow::Result<[(f64, f64); 2]> {
    use std::io::{Seek, SeekFrom};
    let path = dir.join("limits-cache-write.bin");
    let mut f = create_truncated(&path)?;
    let block = vec![0x6bu8; 1 << 20];
    let gb = (1u64 << 30) as f64 / 1e9;
    let mut out = [(0.0, 0.0); 2];
    for pass in &mut out {
        f.seek(SeekFrom::Start(0))
            .context("rewinding the page-cache reference file")?;
        let cpu0 = thread_cpu_seconds()?;
        let start = Instant::now();
        for _ in 0..1024 {
            f.write_all(&block)
                .context("writing the page-cache reference file")?;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds()? - cpu0;
        *pass = (gb * 1e3 / secs, cpu / gb);
    }
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(out)
}

/// 1 MiB writes, each followed by fdatasync, for `budget`.
fn disk_write(dir: &Path, budget: Duration) -> anyhow::Result<(f64, u64)> {
    let path = dir.join("limits-write.bin");
    let mut f = create_truncated(&path)?;
    let block = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < budget || written < 64 << 20 {
        f.write_all(&block)
            .context("writing the disk reference file")?;
        f.sync_data()
            .context("fdatasync of the disk reference file")?;
        written += block.len() as u64;
        if written >= 4 << 30 {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((written as f64 / secs / 1e6, written))
}

/// Reads the file `disk_write` left (still in the page cache), then deletes it.
fn page_cache_read(dir: &Path, len: u64) -> anyhow::Result<f64> {
    let path = dir.join("limits-write.bin");
    let mut f =
        std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut read = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .context("reading the disk reference file")?;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    if read < len {
        anyhow::bail!("read {read} of {len} bytes back");
    }
    Ok(read as f64 / secs / 1e6)
}

/// 4 KiB appends, each followed by fdatasync: the cost of one durable ack.
fn fsync_latency(dir: &Path, budget: Duration) -> anyhow::Result<(u64, Percentiles)> {
    let path = dir.join("limits-fsync.bin");
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block = [0u8; 4096];
    let mut lat = Percentiles::new();
    let start = Instant::now();
    while start.elapsed() < budget {
        let t = Instant::now();
        f.write_all(&block)
            .context("writing the fsync reference file")?;
        f.sync_data().context("fdatasync")?;
        lat.record(t.elapsed());
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    let per_s = (lat.count() as f64 / start.elapsed().as_secs_f64()) as u64;
    Ok((per_s, lat))
}

/// One loopback connection, 1 MiB writes, for `budget`. Returns MB/s and
/// the sender's and receiver's CPU seconds per GB.
fn loopback_tcp(budget: Duration) -> anyhow::Result<(f64, f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback listener")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> anyhow::Result<(u64, f64)> {
        let (mut s, _) = listener.accept()?;
        let cpu0 = thread_cpu_seconds()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((total, thread_cpu_seconds()? - cpu0));
            }
            total += n as u64;
        }
    });
    let mut s = TcpStream::connect(addr).context("connecting on loopback")?;
    let block = vec![0xa5u8; 1 << 20];
    let cpu0 = thread_cpu_seconds()?;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < budget {
        s.write_all(&block).context("loopback write")?;
        sent += block.len() as u64;
    }
    let sender_cpu = thread_cpu_seconds()? - cpu0;
    drop(s);
    let (got, receiver_cpu) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("loopback reader panicked"))?
        .context("loopback read")?;
    let secs = start.elapsed().as_secs_f64();
    if got != sent {
        anyhow::bail!("loopback: sent {sent}, received {got}");
    }
    let gb = got as f64 / 1e9;
    Ok((got as f64 / secs / 1e6, sender_cpu / gb, receiver_cpu / gb))
}

fn crc32c_rate(budget: Duration) -> f64 {
    let buf = vec![0x3cu8; 1 << 20];
    let start = Instant::now();
    let mut done = 0u64;
    let mut acc = 0u32;
    while start.elapsed() < budget {
        acc ^= crc32c::crc32c(&buf);
        done += buf.len() as u64;
    }
    std::hint::black_box(acc);
    done as f64 / start.elapsed().as_secs_f64() / 1e6
}
