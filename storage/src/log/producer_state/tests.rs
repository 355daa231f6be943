use super::snapshot::SNAPSHOT_MAGIC;
use super::*;

fn batch(pid: i64, epoch: i16, first_seq: i32, n: i32, first_offset: i64) -> BatchInfo {
    BatchInfo {
        producer_id: pid,
        epoch,
        first_seq,
        last_seq: first_seq + (n - 1),
        first_offset,
        last_offset: first_offset + n as i64 - 1,
        timestamp: 1_000 + first_offset,
        transactional: false,
        control: None,
    }
}

fn append(m: &mut ProducerStateManager, b: BatchInfo) -> Result<Checked, ProducerError> {
    let c = m.check(&[b], None)?;
    if let Checked::Append(u) = &c {
        m.apply(u.clone());
    }
    Ok(c)
}

#[test]
fn in_order_batches_append_and_retries_are_duplicates() {
    let mut m = ProducerStateManager::default();
    assert!(matches!(
        append(&mut m, batch(7, 0, 0, 3, 0)),
        Ok(Checked::Append(_))
    ));
    assert!(matches!(
        append(&mut m, batch(7, 0, 3, 2, 3)),
        Ok(Checked::Append(_))
    ));
    // A retry of the first batch, at whatever offset it would land now.
    match append(&mut m, batch(7, 0, 0, 3, 5)) {
        Ok(Checked::Duplicate(d)) => assert_eq!((d.first_offset, d.last_offset), (0, 2)),
        other => panic!("{other:?}"),
    }
    // Only the last five are remembered.
    let mut off = 5;
    for seq in (5..30).step_by(5) {
        assert!(matches!(
            append(&mut m, batch(7, 0, seq, 5, off)),
            Ok(Checked::Append(_))
        ));
        off += 5;
    }
    assert!(matches!(
        append(&mut m, batch(7, 0, 0, 3, off)),
        Err(ProducerError::OutOfOrderSequence {
            expected: 30,
            got: 0,
            ..
        })
    ));
}

#[test]
fn gaps_and_stale_epochs_are_refused() {
    let mut m = ProducerStateManager::default();
    append(&mut m, batch(1, 2, 10, 1, 0)).unwrap(); // unknown producer: any start
    assert!(matches!(
        append(&mut m, batch(1, 2, 12, 1, 1)),
        Err(ProducerError::OutOfOrderSequence {
            expected: 11,
            got: 12,
            ..
        })
    ));
    assert!(matches!(
        append(&mut m, batch(1, 1, 11, 1, 1)),
        Err(ProducerError::InvalidProducerEpoch {
            got: 1,
            current: 2,
            ..
        })
    ));
    // A new epoch must restart at sequence 0.
    assert!(matches!(
        append(&mut m, batch(1, 3, 11, 1, 1)),
        Err(ProducerError::OutOfOrderSequence { expected: 0, .. })
    ));
    assert!(matches!(
        append(&mut m, batch(1, 3, 0, 1, 1)),
        Ok(Checked::Append(_))
    ));
    assert_eq!(m.entry(1).map(|e| e.epoch), Some(3));
}

#[test]
fn sequences_wrap_at_i32_max() {
    let mut m = ProducerStateManager::default();
    append(&mut m, batch(1, 0, i32::MAX - 1, 2, 0)).unwrap();
    assert!(matches!(
        append(&mut m, batch(1, 0, 0, 1, 2)),
        Ok(Checked::Append(_))
    ));
}

#[test]
fn transactions_hold_the_stable_offset_until_their_marker() {
    let mut m = ProducerStateManager::default();
    let mut t = batch(5, 0, 0, 2, 10);
    t.transactional = true;
    append(&mut m, t).unwrap();
    assert_eq!(m.first_unstable_offset(), Some(10));
    // A plain batch from the same producer mid-transaction is refused.
    assert!(matches!(
        append(&mut m, batch(5, 0, 2, 1, 12)),
        Err(ProducerError::InvalidTxnState { .. })
    ));
    let mut marker = batch(5, 0, -1, 1, 12);
    marker.control = Some((ControlType::Abort, 3));
    assert_eq!(
        m.completes(&marker),
        Some(CompletedTxn {
            producer_id: 5,
            first_offset: 10,
            last_offset: 12,
            aborted: true
        })
    );
    append(&mut m, marker).unwrap();
    assert_eq!(m.first_unstable_offset(), None);
    // A marker from an older coordinator epoch is fenced.
    marker.control = Some((ControlType::Commit, 2));
    assert!(matches!(
        m.check(&[marker], None),
        Err(ProducerError::CoordinatorFenced { .. })
    ));
}

#[test]
fn snapshot_round_trips_and_rejects_damage() {
    let mut m = ProducerStateManager::default();
    for pid in 0..50 {
        let mut b = batch(pid, 1, 0, 3, pid * 10);
        b.transactional = pid % 7 == 0;
        append(&mut m, b).unwrap();
    }
    let bytes = m.encode();
    let back = ProducerStateManager::decode(&bytes).unwrap();
    assert_eq!(back.producers, m.producers);
    assert_eq!(back.ongoing, m.ongoing);
    for cut in [0, 5, 12, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            ProducerStateManager::decode(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = bytes.clone();
    flipped[20] ^= 1;
    assert!(ProducerStateManager::decode(&flipped).is_err());
    // A lying count with a matching checksum is still refused.
    let mut body = vec![0xff, 0xff, 0xff, 0xff];
    body.extend_from_slice(&[0; 8]);
    let mut lie = SNAPSHOT_MAGIC.to_vec();
    lie.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    lie.extend_from_slice(&body);
    assert!(ProducerStateManager::decode(&lie).is_err());
}

#[test]
fn snapshots_beyond_the_log_end_are_dropped_and_two_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = ProducerStateManager::default();
    for (i, o) in [10i64, 20, 30].into_iter().enumerate() {
        append(&mut m, batch(1, 0, i as i32, 1, o - 1)).unwrap();
        m.write_snapshot(dir.path(), o).unwrap();
    }
    // Nothing is pruned until a newer snapshot is durable.
    let mut left = list_snapshots(dir.path()).unwrap();
    left.sort_unstable();
    assert_eq!(left, vec![10, 20, 30]);
    sync_snapshot(dir.path(), 30).unwrap();
    let mut left = list_snapshots(dir.path()).unwrap();
    left.sort_unstable();
    assert_eq!(left, vec![20, 30]);
    let (loaded, at) = load_snapshot(dir.path(), 25).unwrap().unwrap();
    assert_eq!(at, 20);
    assert_eq!(loaded.entry(1).unwrap().last_seq(), Some(1));
    assert_eq!(list_snapshots(dir.path()).unwrap(), vec![20]);
}

#[test]
fn idle_producers_expire_but_open_transactions_stay() {
    let mut m = ProducerStateManager::default();
    append(&mut m, batch(1, 0, 0, 1, 0)).unwrap();
    let mut t = batch(2, 0, 0, 1, 1);
    t.transactional = true;
    append(&mut m, t).unwrap();
    assert_eq!(m.expire(1_000_000, 10), 1);
    assert!(m.entry(1).is_none() && m.entry(2).is_some());
}

#[test]
fn a_marker_between_verification_and_append_refuses_the_stale_produce() {
    let mut m = ProducerStateManager::default();
    let mut t = batch(8, 0, 0, 1, 0);
    t.transactional = true;
    let token = m.add_guard(8);
    let mut marker = batch(8, 0, -1, 1, 0);
    marker.control = Some((ControlType::Commit, 0));
    append(&mut m, marker).unwrap();
    m.clear_guards(8);
    assert!(matches!(
        m.check(&[t], Some(token)),
        Err(ProducerError::InvalidTxnState { .. })
    ));
    // A fresh verification lets it in; batches continuing the transaction
    // need no token.
    let token = m.add_guard(8);
    t.first_offset = 1;
    t.last_offset = 1;
    let c = m.check(&[t], Some(token)).unwrap();
    let Checked::Append(u) = c else {
        panic!("duplicate?")
    };
    m.apply(u);
    m.remove_guard(8, token);
    let mut next = batch(8, 0, 1, 1, 2);
    next.transactional = true;
    assert!(matches!(
        m.check(&[next], Some(999)),
        Ok(Checked::Append(_))
    ));
}
