//! Tests of the sealed stream format: round trips, the byte layout against
//! `docs/formats/sealed-file.md` (with literal offsets, not the crate's constants), the
//! test vectors printed there, and every failure the document lists.

use std::io::{self, Read, Write};
use std::ops::Range;

use cella_types::Digest;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

use super::*;

/// The chunk size most tests use: the smallest allowed, so multi-chunk files stay small.
const C: usize = MIN_CHUNK_SIZE as usize;

fn key() -> FileKey {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::try_from(i).unwrap();
    }
    FileKey::from_bytes(bytes)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

fn seal_c(plaintext: &[u8], chunk_size: usize) -> (Vec<u8>, SealSummary) {
    let mut out = Vec::new();
    let summary = seal(
        plaintext,
        &mut out,
        &key(),
        u32::try_from(chunk_size).unwrap(),
    )
    .unwrap();
    (out, summary)
}

fn seal_fixed(plaintext: &[u8], chunk_size: u32, prefix: [u8; 7]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = SealWriter::with_nonce_prefix(&mut out, &key(), chunk_size, prefix).unwrap();
    writer.write_all(plaintext).unwrap();
    writer.finish().unwrap();
    out
}

fn unseal_err(sealed: &[u8]) -> UnsealError {
    let mut out = Vec::new();
    let err = unseal(sealed, &mut out, &key()).unwrap_err();
    assert!(
        out.is_empty() || !matches!(err, UnsealError::WrongKey | UnsealError::NotSealedFile),
        "header errors must come before any output"
    );
    err
}

/// Byte ranges of the chunks of a sealed file with chunk size `c`, per the spec: full
/// chunks of `c + 16` bytes after the 53-byte header, the last one shorter or equal.
fn chunk_ranges(file: &[u8], c: usize) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut at = 53;
    while at < file.len() {
        let end = (at + c + 16).min(file.len());
        ranges.push(at..end);
        at = end;
    }
    ranges
}

fn flip(file: &[u8], byte: usize, bit: u8) -> Vec<u8> {
    let mut out = file.to_vec();
    out[byte] ^= 1 << bit;
    out
}

// ---------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------

#[test]
fn round_trips_at_chunk_boundaries() {
    for c in [C, DEFAULT_CHUNK_SIZE as usize] {
        for len in [0, 1, c - 1, c, c + 1, 3 * c + 17] {
            let plaintext = pattern(len);
            let (sealed, sealed_summary) = seal_c(&plaintext, c);
            let expected_len = sealed_len(len as u64, u32::try_from(c).unwrap()).unwrap();
            assert_eq!(sealed.len() as u64, expected_len, "len {len}");
            assert_eq!(sealed_summary.plaintext_len, len as u64);
            assert_eq!(sealed_summary.ciphertext_len, expected_len);
            assert_eq!(sealed_summary.ciphertext_digest, Digest::of(&sealed));

            let mut out = Vec::new();
            let unsealed_summary = unseal(&sealed[..], &mut out, &key()).unwrap();
            assert_eq!(out, plaintext, "chunk {c} len {len}");
            assert_eq!(unsealed_summary, sealed_summary);
        }
    }
}

#[test]
fn to_vec_helpers_round_trip_with_default_chunk_size() {
    let plaintext = pattern(2 * DEFAULT_CHUNK_SIZE as usize + 5);
    let sealed = seal_to_vec(&plaintext, &key()).unwrap();
    assert_eq!(&sealed[10..14], &DEFAULT_CHUNK_SIZE.to_le_bytes());
    assert_eq!(unseal_to_vec(&sealed, &key()).unwrap(), plaintext);
    assert_eq!(
        unseal_to_vec(&seal_to_vec(b"", &key()).unwrap(), &key()).unwrap(),
        b""
    );
}

#[test]
fn same_plaintext_seals_differently_each_time() {
    let a = seal_to_vec(b"same", &key()).unwrap();
    let b = seal_to_vec(b"same", &key()).unwrap();
    assert_ne!(a[14..21], b[14..21], "nonce prefixes must be fresh");
    assert_ne!(a, b);
}

#[test]
fn seal_writer_accepts_writes_of_any_size() {
    let plaintext = pattern(3 * C + 17);
    let mut sealed = Vec::new();
    let mut writer = SealWriter::new(&mut sealed, &key(), MIN_CHUNK_SIZE).unwrap();
    let mut rest = &plaintext[..];
    for size in [7, 0, C - 7, 1, 15, 16, 17, C + 40, usize::MAX]
        .iter()
        .cycle()
    {
        if rest.is_empty() {
            break;
        }
        let n = (*size).min(rest.len());
        writer.write_all(&rest[..n]).unwrap();
        rest = &rest[n..];
    }
    writer.flush().unwrap();
    let summary = writer.finish().unwrap();
    assert_eq!(summary.plaintext_len, plaintext.len() as u64);
    assert_eq!(summary.ciphertext_digest, Digest::of(&sealed));
    assert_eq!(chunk_ranges(&sealed, C).len(), 4);
    assert_eq!(unseal_to_vec(&sealed, &key()).unwrap(), plaintext);
}

#[test]
fn unseal_reader_reads_in_small_pieces_and_reports_summary() {
    let plaintext = pattern(2 * C + 100);
    let (sealed, summary) = seal_c(&plaintext, C);
    let mut reader = UnsealReader::new(&sealed[..], &key()).unwrap();
    assert_eq!(reader.summary(), None);
    let mut out = Vec::new();
    let mut piece = [0u8; 1000];
    loop {
        let n = reader.read(&mut piece).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&piece[..n]);
    }
    assert_eq!(out, plaintext);
    assert_eq!(reader.summary(), Some(summary));
    assert_eq!(
        reader.read(&mut piece).unwrap(),
        0,
        "stays at end of stream"
    );
    assert!(reader.next_chunk().unwrap().is_none());
}

#[test]
fn unseal_reader_next_chunk_yields_whole_chunks() {
    let plaintext = pattern(2 * C + 100);
    let (sealed, _) = seal_c(&plaintext, C);
    let mut reader = UnsealReader::new(&sealed[..], &key()).unwrap();
    let mut sizes = Vec::new();
    while let Some(chunk) = reader.next_chunk().unwrap() {
        sizes.push(chunk.len());
    }
    assert_eq!(sizes, [C, C, 100]);
    // After a partial read, next_chunk returns the rest of the current chunk.
    let mut reader = UnsealReader::new(&sealed[..], &key()).unwrap();
    let mut first = [0u8; 10];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &plaintext[10..C]);
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &plaintext[C..2 * C]);
}

/// A reader that hands out one byte per call and is interrupted every other call.
struct Trickle<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.data.len()).min(1);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn slow_and_interrupted_readers_work() {
    let plaintext = pattern(C + 20);
    let mut sealed = Vec::new();
    let trickle = Trickle {
        data: &plaintext,
        interrupt: false,
    };
    seal(trickle, &mut sealed, &key(), MIN_CHUNK_SIZE).unwrap();
    let mut out = Vec::new();
    let trickle = Trickle {
        data: &sealed,
        interrupt: false,
    };
    unseal(trickle, &mut out, &key()).unwrap();
    assert_eq!(out, plaintext);
}

#[test]
fn largest_and_smallest_chunk_sizes_work() {
    for chunk_size in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE] {
        let plaintext = pattern(MIN_CHUNK_SIZE as usize + 3);
        let mut sealed = Vec::new();
        seal(&plaintext[..], &mut sealed, &key(), chunk_size).unwrap();
        assert_eq!(&sealed[10..14], &chunk_size.to_le_bytes());
        assert_eq!(unseal_to_vec(&sealed, &key()).unwrap(), plaintext);
    }
}

#[test]
fn sealed_len_matches_the_spec_formula() {
    let c = MIN_CHUNK_SIZE;
    assert_eq!(sealed_len(0, c), Some(53 + 16));
    assert_eq!(sealed_len(1, c), Some(53 + 1 + 16));
    assert_eq!(sealed_len(4096, c), Some(53 + 4096 + 16));
    assert_eq!(sealed_len(4097, c), Some(53 + 4097 + 32));
    assert_eq!(
        sealed_len(4096 << 32, c),
        Some(53 + (4096 << 32) + (16 << 32))
    );
    assert_eq!(sealed_len((4096 << 32) + 1, c), None, "2^32 + 1 chunks");
    assert_eq!(sealed_len(u64::MAX, MAX_CHUNK_SIZE), None);
    assert_eq!(sealed_len(10, MIN_CHUNK_SIZE - 1), None);
    assert_eq!(sealed_len(10, MAX_CHUNK_SIZE + 1), None);
}

// ---------------------------------------------------------------------------------
// The layout, checked against the spec with ring directly
// ---------------------------------------------------------------------------------

/// Decrypts chunk `i` of `file` per the spec: nonce = prefix ‖ i (u32 BE) ‖ last flag,
/// AAD = the 53-byte header.
fn open_chunk_per_spec(file: &[u8], range: Range<usize>, i: u32, last: bool) -> Option<Vec<u8>> {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key().as_bytes()).unwrap());
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(&file[14..21]);
    nonce[7..11].copy_from_slice(&i.to_be_bytes());
    nonce[11] = u8::from(last);
    let mut chunk = file[range].to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&file[..53]),
            &mut chunk,
        )
        .ok()?;
    Some(plain.to_vec())
}

#[test]
fn layout_matches_the_spec() {
    assert_eq!(HEADER_LEN, 53);
    assert_eq!(MAGIC, *b"CELLA-SF");
    let prefix = [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6];
    for len in [0, 17, 2 * C, 3 * C + 17] {
        let plaintext = pattern(len);
        let file = seal_fixed(&plaintext, MIN_CHUNK_SIZE, prefix);

        assert_eq!(&file[0..8], b"CELLA-SF");
        assert_eq!(file[8], 1, "format version");
        assert_eq!(file[9], 1, "algorithm id AES-256-GCM");
        assert_eq!(u32::from_le_bytes(file[10..14].try_into().unwrap()), 4096);
        assert_eq!(file[14..21], prefix);

        let mut msg = b"cella-sealed-file-v1 key check".to_vec();
        msg.extend_from_slice(&file[..21]);
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, key().as_bytes());
        assert_eq!(
            &file[21..53],
            hmac::sign(&mac_key, &msg).as_ref(),
            "key check"
        );

        let ranges = chunk_ranges(&file, C);
        assert_eq!(
            ranges.len(),
            len.div_ceil(C).max(1),
            "len {len}: chunk count"
        );
        let mut recovered = Vec::new();
        for (i, range) in ranges.iter().enumerate() {
            let i_u32 = u32::try_from(i).unwrap();
            let last = i + 1 == ranges.len();
            if !last {
                assert_eq!(range.len(), C + 16, "non-final chunks are full");
            }
            let plain = open_chunk_per_spec(&file, range.clone(), i_u32, last)
                .unwrap_or_else(|| panic!("len {len}: chunk {i} does not open per spec"));
            assert!(
                open_chunk_per_spec(&file, range.clone(), i_u32, !last).is_none(),
                "the last flag is part of the nonce"
            );
            recovered.extend_from_slice(&plain);
        }
        assert_eq!(recovered, plaintext);
    }
}

/// The vector printed in `docs/formats/sealed-file.md`: key 00..1f, prefix a0..a6,
/// chunk size 4096, plaintext "hello, cella".
#[test]
fn test_vector_small() {
    let file = seal_fixed(
        b"hello, cella",
        MIN_CHUNK_SIZE,
        [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6],
    );
    let expected = concat!(
        "43454c4c412d5346", // magic "CELLA-SF"
        "01",               // version
        "01",               // algorithm: AES-256-GCM
        "00100000",         // chunk size 4096, LE
        "a0a1a2a3a4a5a6",   // nonce prefix
        "009a932bb5d87442b5323d35204418ee9d030fa9e17c1d60c3aab2830eb05767", // key check
        "1f042572d72ac0a36609b44e", // chunk 0 (final): ciphertext
        "0bd4c66e062d0355c878612870317ea3", // chunk 0: tag
    );
    assert_eq!(hex::encode(&file), expected);
    assert_eq!(
        Digest::of(&file).to_hex(),
        "1a54bcd716680adbc83e011d543820ea568ac3c8a37fc87753011b2c5043820e"
    );
    assert_eq!(unseal_to_vec(&file, &key()).unwrap(), b"hello, cella");
}

/// Second vector: 4096 + 1 bytes where byte i is i mod 251, same key and prefix: two
/// chunks, pinned by digest.
#[test]
fn test_vector_two_chunks() {
    let file = seal_fixed(
        &pattern(C + 1),
        MIN_CHUNK_SIZE,
        [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6],
    );
    assert_eq!(file.len(), 53 + C + 16 + 1 + 16);
    assert_eq!(
        Digest::of(&file).to_hex(),
        "4058ef1712cbbcbc1b3969c18a45ede39c8415b6446a4b9dc02fbdb66d3afbd4"
    );
}

/// Decoders accept an empty final chunk after full chunks (a writer that does not look
/// ahead produces one), even though this crate's writer never does.
#[test]
fn empty_final_chunk_after_full_chunks_is_accepted() {
    let plaintext = pattern(C);
    let file = seal_fixed(&plaintext, MIN_CHUNK_SIZE, [1; 7]);
    // Re-seal chunk 0 as non-final and append an empty final chunk 1, with ring directly.
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key().as_bytes()).unwrap());
    let nonce = |i: u32, last: u8| {
        let mut n = [1u8; 12];
        n[7..11].copy_from_slice(&i.to_be_bytes());
        n[11] = last;
        Nonce::assume_unique_for_key(n)
    };
    let header = file[..53].to_vec();
    let mut chunk0 = plaintext.clone();
    key.seal_in_place_append_tag(nonce(0, 0), Aad::from(&header), &mut chunk0)
        .unwrap();
    let mut chunk1 = Vec::new();
    key.seal_in_place_append_tag(nonce(1, 1), Aad::from(&header), &mut chunk1)
        .unwrap();
    let crafted = [header, chunk0, chunk1].concat();
    assert_eq!(unseal_to_vec(&crafted, &self::key()).unwrap(), plaintext);
}

// ---------------------------------------------------------------------------------
// Header failures
// ---------------------------------------------------------------------------------

#[test]
fn not_a_sealed_file() {
    for input in [
        &b"PK\x03\x04 a zip file"[..],
        b"hello world, plain text",
        b"x",
        b"CELLA-SX",
    ] {
        assert!(
            matches!(unseal_err(input), UnsealError::NotSealedFile),
            "{input:?}"
        );
    }
}

#[test]
fn cut_inside_header_is_truncated_header() {
    let file = seal_to_vec(b"data", &key()).unwrap();
    for cut in 0..53 {
        match unseal_err(&file[..cut]) {
            UnsealError::TruncatedHeader { len } => assert_eq!(len, cut),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn unsupported_version_and_algorithm() {
    let file = seal_to_vec(b"data", &key()).unwrap();
    for version in [0u8, 2, 255] {
        let mut bad = file.clone();
        bad[8] = version;
        assert!(matches!(
            unseal_err(&bad),
            UnsealError::UnsupportedVersion { version: v } if v == version
        ));
        // Reported even when the rest of the (different) header is missing.
        assert!(matches!(
            unseal_err(&bad[..9]),
            UnsealError::UnsupportedVersion { .. }
        ));
    }
    for algorithm in [0u8, 2] {
        let mut bad = file.clone();
        bad[9] = algorithm;
        assert!(matches!(
            unseal_err(&bad),
            UnsealError::UnsupportedAlgorithm { algorithm: a } if a == algorithm
        ));
    }
}

#[test]
fn chunk_size_out_of_range_in_header() {
    let file = seal_to_vec(b"data", &key()).unwrap();
    for size in [0u32, 1, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, u32::MAX] {
        let mut bad = file.clone();
        bad[10..14].copy_from_slice(&size.to_le_bytes());
        assert!(matches!(
            unseal_err(&bad),
            UnsealError::InvalidChunkSize { chunk_size } if chunk_size == size
        ));
    }
    // In range but not the sealed one: the key check catches it.
    for size in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE] {
        let mut bad = file.clone();
        bad[10..14].copy_from_slice(&size.to_le_bytes());
        assert!(matches!(unseal_err(&bad), UnsealError::WrongKey));
    }
}

#[test]
fn chunk_size_out_of_range_when_sealing() {
    for size in [0u32, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, u32::MAX] {
        let mut out = Vec::new();
        let err = seal(&b"data"[..], &mut out, &key(), size).unwrap_err();
        assert!(
            matches!(err, SealError::InvalidChunkSize { chunk_size } if chunk_size == size),
            "{err:?}"
        );
        assert!(out.is_empty(), "nothing written for a bad chunk size");
    }
}

/// Every single-bit flip in the header yields the variant the spec's table gives for
/// that field.
#[test]
fn every_header_bit_flip_is_caught_as_the_spec_says() {
    let file = seal_c(&pattern(C + 5), C).0;
    for byte in 0..53 {
        for bit in 0..8 {
            let err = unseal_err(&flip(&file, byte, bit));
            let ok = match byte {
                0..8 => matches!(err, UnsealError::NotSealedFile),
                8 => matches!(err, UnsealError::UnsupportedVersion { .. }),
                9 => matches!(err, UnsealError::UnsupportedAlgorithm { .. }),
                10..14 => matches!(
                    err,
                    UnsealError::InvalidChunkSize { .. } | UnsealError::WrongKey
                ),
                _ => matches!(err, UnsealError::WrongKey),
            };
            assert!(ok, "byte {byte} bit {bit}: {err:?}");
        }
    }
}

#[test]
fn wrong_key_is_reported_before_any_chunk_is_read() {
    let file = seal_c(&pattern(3 * C + 17), C).0;
    let other = FileKey::generate();
    let mut out = Vec::new();
    assert!(matches!(
        unseal(&file[..], &mut out, &other).unwrap_err(),
        UnsealError::WrongKey
    ));
    assert!(out.is_empty());
    // The header alone is enough to tell: no chunk needs to be present.
    assert!(matches!(
        UnsealReader::new(&file[..53], &other).err().unwrap(),
        UnsealError::WrongKey
    ));
    let empty = seal_to_vec(b"", &key()).unwrap();
    assert!(matches!(
        unseal_to_vec(&empty, &other).unwrap_err(),
        UnsealError::WrongKey
    ));
}

// ---------------------------------------------------------------------------------
// Truncation, trailing data, reordering, corruption
// ---------------------------------------------------------------------------------

#[test]
fn cut_right_after_header_is_truncated_stream() {
    let file = seal_c(&pattern(10), C).0;
    assert!(matches!(
        unseal_err(&file[..53]),
        UnsealError::TruncatedStream { chunks: 0 }
    ));
}

#[test]
fn cut_at_chunk_boundaries_before_final_chunk_is_truncated_stream() {
    for len in [3 * C + 17, 3 * C] {
        let file = seal_c(&pattern(len), C).0;
        let ranges = chunk_ranges(&file, C);
        for k in 1..ranges.len() {
            match unseal_err(&file[..ranges[k].start]) {
                UnsealError::TruncatedStream { chunks } => assert_eq!(chunks, k as u64),
                other => panic!("len {len} cut after chunk {k}: {other:?}"),
            }
        }
    }
}

#[test]
fn cut_inside_last_chunk() {
    let file = seal_c(&pattern(3 * C + 17), C).0;
    let last = chunk_ranges(&file, C)[3].clone();
    assert_eq!(last.len(), 17 + 16);
    // Fewer than a tag's worth of the last chunk left: provably cut.
    for keep in 1..16 {
        match unseal_err(&file[..last.start + keep]) {
            UnsealError::TruncatedStream { chunks } => assert_eq!(chunks, 3),
            other => panic!("keep {keep}: {other:?}"),
        }
    }
    // A tag's worth or more left: the remaining bytes are not a valid final chunk.
    for keep in 16..last.len() {
        assert!(
            matches!(
                unseal_err(&file[..last.start + keep]),
                UnsealError::ChunkAuthFailed { chunk: 3 }
            ),
            "keep {keep}"
        );
    }
    // A one-chunk file cut to fewer than 16 chunk bytes.
    let small = seal_c(b"0123456789abcdefghij", C).0;
    assert!(matches!(
        unseal_err(&small[..53 + 15]),
        UnsealError::TruncatedStream { chunks: 0 }
    ));
}

#[test]
fn cut_inside_a_middle_chunk_fails_authentication() {
    let file = seal_c(&pattern(3 * C + 17), C).0;
    let middle = chunk_ranges(&file, C)[1].clone();
    assert!(matches!(
        unseal_err(&file[..middle.start + C / 2]),
        UnsealError::ChunkAuthFailed { chunk: 1 }
    ));
}

#[test]
fn trailing_data_after_full_size_final_chunk() {
    for (len, final_index) in [(C, 0u32), (2 * C, 1)] {
        let file = seal_c(&pattern(len), C).0;
        for extra in 1..16 {
            let mut bad = file.clone();
            bad.extend(std::iter::repeat_n(0u8, extra));
            match unseal_err(&bad) {
                UnsealError::TrailingData { final_chunk } => assert_eq!(final_chunk, final_index),
                other => panic!("len {len} + {extra}: {other:?}"),
            }
        }
        // 16 or more bytes after it make it look like a non-final chunk.
        let mut bad = file.clone();
        bad.extend_from_slice(&[0u8; 16]);
        assert!(matches!(
            unseal_err(&bad),
            UnsealError::ChunkAuthFailed { chunk } if chunk == final_index
        ));
    }
}

#[test]
fn trailing_data_after_short_final_chunk_fails_its_authentication() {
    let file = seal_c(&pattern(3 * C + 17), C).0;
    for extra in [1usize, 5, 100] {
        let mut bad = file.clone();
        bad.extend(std::iter::repeat_n(7u8, extra));
        assert!(matches!(
            unseal_err(&bad),
            UnsealError::ChunkAuthFailed { chunk: 3 }
        ));
    }
    // Two sealed files concatenated are not one.
    let twice = [file.clone(), file].concat();
    assert!(matches!(
        unseal_err(&twice),
        UnsealError::ChunkAuthFailed { chunk: 3 }
    ));
}

#[test]
fn reordered_dropped_duplicated_and_spliced_chunks_fail_at_their_position() {
    let file = seal_c(&pattern(3 * C + 17), C).0;
    let r = chunk_ranges(&file, C);
    let part = |i: usize| file[r[i].clone()].to_vec();
    let header = file[..53].to_vec();

    let swapped01 = [header.clone(), part(1), part(0), part(2), part(3)].concat();
    assert!(matches!(
        unseal_err(&swapped01),
        UnsealError::ChunkAuthFailed { chunk: 0 }
    ));
    let swapped12 = [header.clone(), part(0), part(2), part(1), part(3)].concat();
    assert!(matches!(
        unseal_err(&swapped12),
        UnsealError::ChunkAuthFailed { chunk: 1 }
    ));
    let dropped1 = [header.clone(), part(0), part(2), part(3)].concat();
    assert!(matches!(
        unseal_err(&dropped1),
        UnsealError::ChunkAuthFailed { chunk: 1 }
    ));
    let repeated0 = [header.clone(), part(0), part(0), part(2), part(3)].concat();
    assert!(matches!(
        unseal_err(&repeated0),
        UnsealError::ChunkAuthFailed { chunk: 1 }
    ));
    let dropped_final = [header.clone(), part(0), part(1), part(3)].concat();
    assert!(matches!(
        unseal_err(&dropped_final),
        UnsealError::ChunkAuthFailed { chunk: 2 }
    ));

    // Chunk 1 of another file under the same key (other nonce prefix and header).
    let other = seal_c(&pattern(3 * C + 17), C).0;
    let spliced = [
        header,
        part(0),
        other[r[1].clone()].to_vec(),
        part(2),
        part(3),
    ]
    .concat();
    assert!(matches!(
        unseal_err(&spliced),
        UnsealError::ChunkAuthFailed { chunk: 1 }
    ));
}

#[test]
fn flipped_bits_in_each_chunk_and_tag_name_the_chunk() {
    for len in [0, 3 * C + 17, 2 * C] {
        let file = seal_c(&pattern(len), C).0;
        for (i, range) in chunk_ranges(&file, C).into_iter().enumerate() {
            let tag_start = range.end - 16;
            let mut positions = vec![tag_start, range.end - 1];
            if range.start < tag_start {
                positions.extend([range.start, tag_start - 1]);
            }
            for pos in positions {
                match unseal_err(&flip(&file, pos, 3)) {
                    UnsealError::ChunkAuthFailed { chunk } => {
                        assert_eq!(chunk as usize, i, "len {len} byte {pos}");
                    }
                    other => panic!("len {len} byte {pos}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn no_plaintext_of_a_failing_chunk_is_released() {
    let plaintext = pattern(3 * C + 17);
    let file = seal_c(&plaintext, C).0;
    let bad = flip(&file, chunk_ranges(&file, C)[2].start + 100, 0);

    let mut out = Vec::new();
    let err = unseal(&bad[..], &mut out, &key()).unwrap_err();
    assert!(matches!(err, UnsealError::ChunkAuthFailed { chunk: 2 }));
    assert_eq!(
        out,
        &plaintext[..2 * C],
        "exactly the verified chunks, nothing of chunk 2"
    );

    let mut reader = UnsealReader::new(&bad[..], &key()).unwrap();
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &plaintext[..C]);
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &plaintext[C..2 * C]);
    assert!(matches!(
        reader.next_chunk().unwrap_err(),
        UnsealError::ChunkAuthFailed { chunk: 2 }
    ));
    assert!(matches!(
        reader.next_chunk().unwrap_err(),
        UnsealError::AlreadyFailed
    ));
    assert_eq!(reader.summary(), None);

    assert!(unseal_to_vec(&bad, &key()).is_err());
}

#[test]
fn read_adapter_maps_errors_to_io_kinds_with_the_cause_inside() {
    let file = seal_c(&pattern(2 * C), C).0;
    let mut sink = Vec::new();

    let bad = flip(&file, 60, 0);
    let err = io::copy(&mut UnsealReader::new(&bad[..], &key()).unwrap(), &mut sink).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<UnsealError>());
    assert!(
        matches!(inner, Some(UnsealError::ChunkAuthFailed { chunk: 0 })),
        "{err:?}"
    );

    let cut = &file[..53 + C + 16];
    let mut reader = UnsealReader::new(cut, &key()).unwrap();
    let err = io::copy(&mut reader, &mut sink).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    let again = reader.read(&mut [0u8; 8]).unwrap_err();
    assert!(matches!(
        again
            .get_ref()
            .and_then(|e| e.downcast_ref::<UnsealError>()),
        Some(UnsealError::AlreadyFailed)
    ));
}

// ---------------------------------------------------------------------------------
// I/O failures and abandoned writers
// ---------------------------------------------------------------------------------

struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

impl Write for Failing {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn source_text(e: &dyn std::error::Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}

#[test]
fn io_errors_carry_their_source() {
    let err = seal(Failing, Vec::new(), &key(), MIN_CHUNK_SIZE).unwrap_err();
    assert!(matches!(err, SealError::Read(_)));
    assert_eq!(source_text(&err), "disk on fire");
    let err = seal(&b"x"[..], Failing, &key(), MIN_CHUNK_SIZE).unwrap_err();
    assert!(matches!(err, SealError::Write(_)));
    assert_eq!(source_text(&err), "disk on fire");

    let err = unseal(Failing, Vec::new(), &key()).unwrap_err();
    assert!(matches!(err, UnsealError::Read(_)));
    assert_eq!(source_text(&err), "disk on fire");
    let file = seal_to_vec(b"x", &key()).unwrap();
    let err = unseal(&file[..], Failing, &key()).unwrap_err();
    assert!(matches!(err, UnsealError::Write(_)));
    assert_eq!(source_text(&err), "disk on fire");
}

#[test]
fn seal_writer_dropped_without_finish_leaves_a_truncated_stream() {
    let mut out = Vec::new();
    {
        let mut writer = SealWriter::new(&mut out, &key(), MIN_CHUNK_SIZE).unwrap();
        writer.write_all(&pattern(2 * C + 3)).unwrap();
    }
    assert!(matches!(
        unseal_to_vec(&out, &key()).unwrap_err(),
        UnsealError::TruncatedStream { chunks: 2 }
    ));
}
