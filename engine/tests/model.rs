//! The engine against a model (engine/tests/common/model.rs, shared with the fuzz target
//! `fuzz_engine_model`): seeded random sequences of backups, forgets, prunes, waits, faults and
//! repairs on an in-memory repository, each checked against a map of snapshot → bytes after
//! every operation. CI runs this; the fuzzer explores further from the same code.

#[path = "common/model.rs"]
mod model;

use std::panic::{AssertUnwindSafe, catch_unwind};

mod common;

use common::Rng;
use model::{Edit, Op, Stats, decode, encode};

/// Input `i`: 1 to 16 operations, biased towards backups so there is something to forget and
/// prune, towards faults followed by an operation they hit, and towards whole prune cycles
/// (forget, wait, prune that plans, wait, prune that sweeps).
fn input(i: u64) -> Vec<u8> {
    let mut rng = Rng(0x0DE1_5EED ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ops = 1 + rng.next() % model::MAX_OPS as u64;
    let mut out = Vec::new();
    while out.len() < 2 * ops as usize {
        let r = rng.next();
        let mut arg = (r >> 16) as u8;
        let tag = match r % 20 {
            0..=6 => 0,   // backup
            7 | 8 => 2,   // forget
            9 | 10 => 3,  // prune
            11 => 4,      // wait
            12..=14 => 5, // fault
            15 => 6,      // verify
            16 => 7,      // repair index
            17 | 18 => {
                // A prune cycle.
                out.extend([2, arg & 0xfe, 4, 0, 3, 0, 4, 0, 3, 0]);
                continue;
            }
            _ => (r >> 8) as u8, // anything
        };
        if tag == 5 {
            // Mostly small k: the operations write a handful of objects.
            arg = (arg & 0x80) | (arg % 6);
        }
        out.push(tag);
        out.push(arg);
    }
    out.truncate(2 * ops as usize);
    out
}

#[test]
fn decode_and_encode_agree() {
    let ops = vec![
        Op::Backup {
            stream: 2,
            edit: Edit::Insert,
            at: 5,
        },
        Op::KeepLast(3),
        Op::ForgetIndex(7),
        Op::Prune,
        Op::Wait,
        Op::Crash(9),
        Op::LoseResponses(31),
        Op::Verify,
        Op::RepairIndex,
    ];
    assert_eq!(decode(&encode(&ops)), ops);
    // Every input decodes; an odd last byte is ignored, and so is everything past MAX_OPS.
    for i in 0..200 {
        let bytes = input(i);
        assert_eq!(decode(&bytes).len(), bytes.len() / 2);
        assert_eq!(encode(&decode(&bytes)).len(), bytes.len());
    }
    assert_eq!(decode(&[0; 3]).len(), 1);
    assert_eq!(decode(&[0; 100]).len(), model::MAX_OPS);
}

/// Scripted sequences that reach every part of the model: dedup across edits, a forget of each
/// kind, a prune that plans and one that sweeps after the grace period, crashes and lost
/// responses in each kind of operation, and a repair.
#[test]
fn scripted_sequences_cover_every_operation() {
    let b = |stream, edit, at| Op::Backup { stream, edit, at };
    let first = [
        b(0, Edit::Same, 0),
        b(1, Edit::Same, 0),
        b(0, Edit::Overwrite, 3),
        b(2, Edit::CopyOther, 0),
        Op::Crash(1),
        b(1, Edit::Append, 0),
        Op::KeepLast(1),
        Op::Wait,
        Op::Prune,
        Op::Wait,
        Op::Prune,
        Op::Verify,
        Op::Crash(2),
        Op::ForgetIndex(0),
        Op::Crash(3),
        Op::RepairIndex,
    ];
    let stats = model::run(&encode(&first));
    assert_eq!(stats.ops, 16);
    assert!(stats.backups >= 4 && stats.forgotten >= 2, "{stats:?}");
    assert!(stats.packs_swept >= 1, "{stats:?}");
    assert!(stats.faulted_failures >= 2, "{stats:?}");

    let second = [
        b(0, Edit::Fresh, 0),
        b(0, Edit::Insert, 4),
        Op::KeepLast(0),
        Op::Wait,
        Op::LoseResponses(4),
        Op::Prune,
        Op::Crash(1),
        Op::Prune,
        Op::Prune,
        Op::Wait,
        Op::Crash(5),
        Op::Prune,
        Op::Wait,
        Op::Prune,
        Op::LoseResponses(0),
        Op::RepairIndex,
    ];
    let stats = model::run(&encode(&second));
    assert!(stats.faulted_failures >= 2, "{stats:?}");
    assert!(stats.prunes_refused >= 1, "{stats:?}");
}

/// Runs inputs `from..to` (overridden by `CAIRN_MODEL_RUNS`: that many per shard).
fn random_sequences(shard: u64, per_shard: u64) {
    let per_shard = std::env::var("CAIRN_MODEL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(per_shard);
    let start = std::time::Instant::now();
    let mut total = Stats::default();
    for i in shard * per_shard..(shard + 1) * per_shard {
        let bytes = input(i);
        let stats = catch_unwind(AssertUnwindSafe(|| model::run(&bytes))).unwrap_or_else(|_| {
            panic!(
                "sequence {i} failed (input {bytes:02x?}): {:?}",
                decode(&bytes)
            )
        });
        total.ops += stats.ops;
        total.backups += stats.backups;
        total.faulted_failures += stats.faulted_failures;
        total.faulted_successes += stats.faulted_successes;
        total.adopted += stats.adopted;
        total.forgotten += stats.forgotten;
        total.packs_swept += stats.packs_swept;
        total.prunes_refused += stats.prunes_refused;
    }
    eprintln!(
        "shard {shard}: {per_shard} sequences in {:.1?}: {total:?}",
        start.elapsed()
    );
    assert!(total.backups > per_shard, "{total:?}");
    assert!(
        total.faulted_failures > 0 && total.packs_swept > 0,
        "{total:?}"
    );
}

// 200 sequences in four shards, which nextest runs in parallel.
const PER_SHARD: u64 = 50;

#[test]
fn random_sequences_agree_with_the_model_0() {
    random_sequences(0, PER_SHARD);
}

#[test]
fn random_sequences_agree_with_the_model_1() {
    random_sequences(1, PER_SHARD);
}

#[test]
fn random_sequences_agree_with_the_model_2() {
    random_sequences(2, PER_SHARD);
}

#[test]
fn random_sequences_agree_with_the_model_3() {
    random_sequences(3, PER_SHARD);
}
