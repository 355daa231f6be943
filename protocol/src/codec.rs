//! The records section of a v2 batch through its codec: decompression with
//! a bound on the output (a small batch must not expand into gigabytes of
//! memory, on the produce path or in the cleaner), and compression with
//! the same codec when the cleaner rebuilds a batch, and old clients' message sets (see [`crate::legacy`]).

use std::io::Read;

use crate::record_batch::Compression;
use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{self as kc, Compressor};

/// Most bytes a batch's records section may decompress to. Kafka has no
/// such limit (it streams), but a v2 batch is read whole here; 256 MiB is
/// far beyond any batch a client builds (its batch.size default is 16 KiB,
/// max.message.bytes 1 MiB) and still bounded.
pub const MAX_RECORDS_BYTES: usize = 256 << 20;

/// Why a records section could not go through its codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{codec:?} records section does not decompress: {reason}")]
    Corrupt { codec: Compression, reason: String },
    #[error("{codec:?} records section decompresses past {limit} bytes")]
    TooLarge { codec: Compression, limit: usize },
    #[error("compressing the records section with {codec:?}: {reason}")]
    Compress { codec: Compression, reason: String },
}

/// Reads `r` to its end, failing once more than `limit` bytes come out.
fn read_bounded(
    mut r: impl Read,
    codec: Compression,
    limit: usize,
    hint: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(hint.min(limit));
    let mut taken = (&mut r).take(limit as u64 + 1);
    taken
        .read_to_end(&mut out)
        .map_err(|e| CodecError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(CodecError::TooLarge { codec, limit });
    }
    Ok(out)
}

/// Bound on a raw snappy block's expansion (64 / 3, rounded up generously).
const SNAPPY_MAX_RATIO: usize = 32;

/// Kafka's snappy is xerial's framing (a 16-byte magic header, then blocks
/// of u32 length + raw snappy), or raw snappy when the header is absent.
fn snappy(input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    const MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    const HEADER: usize = 16;
    let codec = Compression::Snappy;
    let corrupt = |reason: String| CodecError::Corrupt { codec, reason };
    let blocks: Vec<&[u8]> = if input.len() >= HEADER && &input[..8] == MAGIC {
        let mut rest = &input[HEADER..];
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let Some(len) = rest.get(..4) else {
                return Err(corrupt("torn block length".into()));
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(block) = rest.get(4..4 + len) else {
                return Err(corrupt(format!("block of {len} bytes runs past the end")));
            };
            blocks.push(block);
            rest = &rest[4 + len..];
        }
        blocks
    } else {
        vec![input]
    };
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    for block in blocks {
        // The block states its decompressed size up front: check it first.
        let n = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        if out.len() + n > limit {
            return Err(CodecError::TooLarge { codec, limit });
        }
        // No snappy op writes more than 64 bytes from 3 (a 2-byte-offset
        // copy), so a claim past that ratio is a lie: refuse it before
        // zeroing the claimed size (fuzz finding 8, a 352-byte batch
        // claiming 256 MiB).
        if n > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
            return Err(corrupt(format!(
                "a block of {} bytes claims {n} bytes, more than snappy expands to",
                block.len()
            )));
        }
        let at = out.len();
        out.resize(at + n, 0);
        let got = decoder
            .decompress(block, &mut out[at..])
            .map_err(|e| corrupt(e.to_string()))?;
        out.truncate(at + got);
    }
    Ok(out)
}

/// The records section `input` of a batch compressed with `codec`,
/// decompressed; at most `limit` bytes.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let corrupt = |e: std::io::Error| CodecError::Corrupt {
        codec,
        reason: e.to_string(),
    };
    let hint = input.len().saturating_mul(4);
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(CodecError::TooLarge { codec, limit });
            }
            Ok(input.to_vec())
        }
        // Java's GZIPInputStream reads concatenated members too.
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(input), codec, limit, hint)
        }
        Compression::Snappy => snappy(input, limit),
        Compression::Lz4 => {
            let d = lz4::Decoder::new(input).map_err(corrupt)?;
            read_bounded(d, codec, limit, hint)
        }
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::with_buffer(input).map_err(corrupt)?;
            read_bounded(d, codec, limit, hint)
        }
    }
}

/// `raw` (a records section) compressed with `codec`, framed as Kafka
/// clients frame it (kafka-protocol's encoders, which librdkafka and the
/// Java client read).
pub fn compress(codec: Compression, raw: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = BytesMut::with_capacity(raw.len() / 2 + 64);
    // The closures' error type (anyhow's) is inferred from the trait bound.
    let done = match codec {
        Compression::None => return Ok(raw.to_vec()),
        Compression::Gzip => kc::Gzip::compress(&mut out, |b| {
            b.put_slice(raw);
            Ok(())
        }),
        Compression::Snappy => kc::Snappy::compress(&mut out, |b| {
            b.put_slice(raw);
            Ok(())
        }),
        Compression::Lz4 => kc::Lz4::compress(&mut out, |b| {
            b.put_slice(raw);
            Ok(())
        }),
        Compression::Zstd => kc::Zstd::compress(&mut out, |b| {
            b.put_slice(raw);
            Ok(())
        }),
    };
    done.map_err(|e| CodecError::Compress {
        codec,
        reason: format!("{e:#}"),
    })?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for c in ALL {
            let packed = compress(c, &raw).unwrap();
            assert_eq!(
                decompress(c, &packed, MAX_RECORDS_BYTES).unwrap(),
                raw,
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_snappy_block_claiming_more_than_it_can_expand_to_is_corrupt() {
        // Varint 200 MiB, then one literal byte: raw snappy's header.
        let mut block = Vec::new();
        let mut n = 200u32 << 20;
        while n >= 0x80 {
            block.push((n as u8) | 0x80);
            n >>= 7;
        }
        block.extend([n as u8, 0, b'x']);
        match decompress(Compression::Snappy, &block, MAX_RECORDS_BYTES) {
            Err(CodecError::Corrupt { reason, .. }) => {
                assert!(reason.contains("claims"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // The real encoder's best case (all zeroes) stays inside the bound.
        let zeros = vec![0u8; 8 << 20];
        let packed = compress(Compression::Snappy, &zeros).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &packed, MAX_RECORDS_BYTES).unwrap(),
            zeros
        );
    }

    #[test]
    fn output_is_bounded_and_garbage_is_an_error() {
        let raw = vec![0u8; 1 << 20];
        for c in ALL {
            let packed = compress(c, &raw).unwrap();
            assert!(
                matches!(
                    decompress(c, &packed, 1000),
                    Err(CodecError::TooLarge { .. })
                ),
                "{c:?}"
            );
            if c != Compression::None {
                assert!(
                    decompress(c, &[1, 2, 3, 4, 5, 6, 7], 1000).is_err(),
                    "{c:?}"
                );
            }
        }
    }
}
