//! The engine against a model: each input is a short sequence of backups, forgets, prunes,
//! waits, faults (crash after k writes, lost responses) and repairs on an in-memory repository,
//! checked after every operation against a map of snapshot → bytes. The model and the input's
//! encoding are in engine/tests/common/model.rs, shared with the deterministic test
//! engine/tests/model.rs; a crash input here replays there with `model::run(&input)`.
//!
//! Each input costs tens of milliseconds (a repository, an index cache, `check` runs), so run
//! it with a small `-max_len` (`fuzz/run.sh` passes 32: 16 operations).
#![no_main]

#[path = "../../engine/tests/common/model.rs"]
mod model;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    model::run(data);
});
