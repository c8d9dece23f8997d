//! The repository config (SPEC §6): a plain header, then an envelope of a TLV body.
//!
//! ```text
//! "CAIRNCFG" | format version u8 | repo_id[32] | envelope(AAD(config, repo_id, zeros), body)
//! body (TLV, §11): 1 created i64 | 2 compression_level i32 | 3 data_pack_size u32
//!                  | 4 tree_pack_size u32 | 5 chunker_profiles | 6 prune_grace u64 (optional)
//! ```
//!
//! Tags 1-5 are required; an absent tag 6 means the default grace period of 12 h (writers always
//! write it). The plain header answers "is this a cairn repository, and which"
//! before any password is asked for ([`Config::peek_repo_id`]).

use crate::chunker::ChunkerParams;
use crate::crypto::{ObjectType, RepoKeys};
use crate::error::FormatError;
use crate::format::{
    CONFIG_HEADER_LEN, CONFIG_MAGIC, DATA_PACK_SIZE_MIN, DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_DATA_PACK_SIZE, DEFAULT_PRUNE_GRACE_SECS, DEFAULT_TREE_PACK_SIZE, FORMAT_VERSION,
    MAX_COMPRESSION_LEVEL, MAX_PROFILES, PACK_SIZE_MAX, PRUNE_GRACE_MAX, PRUNE_GRACE_MIN,
    TREE_PACK_SIZE_MIN,
};
use crate::id::Id;
use crate::tlv::{TlvReader, TlvWriter, expect_len, unknown_tag};
use crate::wire::{Put, Reader};

const WHAT: &str = "config";

const TAG_CREATED: u16 = 1;
const TAG_COMPRESSION: u16 = 2;
const TAG_DATA_PACK_SIZE: u16 = 3;
const TAG_TREE_PACK_SIZE: u16 = 4;
const TAG_PROFILES: u16 = 5;
const TAG_PRUNE_GRACE: u16 = 6;

/// A named set of chunker limits (SPEC §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkerProfile {
    /// 1 to 255 ASCII bytes, e.g. `file`.
    pub name: String,
    /// The limits.
    pub params: ChunkerParams,
}

impl ChunkerProfile {
    /// The `file` profile `init` writes.
    pub fn file() -> ChunkerProfile {
        ChunkerProfile {
            name: "file".into(),
            params: ChunkerParams::FILE,
        }
    }

    /// The `stream` profile `init` writes.
    pub fn stream() -> ChunkerProfile {
        ChunkerProfile {
            name: "stream".into(),
            params: ChunkerParams::STREAM,
        }
    }

    /// The `redis` profile `init` writes.
    pub fn redis() -> ChunkerProfile {
        ChunkerProfile {
            name: "redis".into(),
            params: ChunkerParams::REDIS,
        }
    }

    /// Appends `u8 len + name, min, avg, max` (also the snapshot's `chunker` field, SPEC §10).
    pub(crate) fn encode_into(
        &self,
        what: &'static str,
        out: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        self.validate(what)?;
        out.put_u8(self.name.len() as u8); // validate() checked 1..=255
        out.put_bytes(self.name.as_bytes());
        out.put_u32(self.params.min);
        out.put_u32(self.params.avg);
        out.put_u32(self.params.max);
        Ok(())
    }

    /// Reads what [`ChunkerProfile::encode_into`] wrote, and validates it.
    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<ChunkerProfile, FormatError> {
        let len = r.u8()? as usize;
        let name = r.bytes(len)?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| FormatError::corrupted(r.what(), "chunker profile name is not ASCII"))?;
        let params = ChunkerParams {
            min: r.u32()?,
            avg: r.u32()?,
            max: r.u32()?,
        };
        let p = ChunkerProfile { name, params };
        p.validate(r.what())?;
        Ok(p)
    }

    fn validate(&self, what: &'static str) -> Result<(), FormatError> {
        if self.name.is_empty() || self.name.len() > 255 || !self.name.is_ascii() {
            return Err(FormatError::corrupted(
                what,
                format!(
                    "chunker profile name {:?} must be 1 to 255 ASCII bytes",
                    self.name
                ),
            ));
        }
        self.params.validate()
    }
}

/// The repository config (SPEC §6). Written once by `init`, never changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Random id of the repository; in every AAD.
    pub repo_id: Id,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// zstd level, 1..=19, or 0 to store raw.
    pub compression_level: i32,
    /// Target size of data packs, 1 MiB..=1 GiB.
    pub data_pack_size: u32,
    /// Target size of tree packs, 64 KiB..=1 GiB.
    pub tree_pack_size: u32,
    /// Chunker profiles: 1 to 16, unique names.
    pub profiles: Vec<ChunkerProfile>,
    /// Prune's grace period, seconds, 1..=2 592 000 (30 days): prune deletes a pack only in a
    /// run that starts at least this long (on the storage's clock) after the plan that marked
    /// it was written (SPEC §6, §17). Default 43 200 (12 h), also when the config has no tag 6.
    pub prune_grace_secs: u64,
}

impl Config {
    /// The defaults `init` writes: level 3, 16 MiB data packs, 4 MiB tree packs, profiles
    /// `file` and `stream`, a prune grace period of 12 h.
    pub fn new(repo_id: Id, created: i64) -> Config {
        Config {
            repo_id,
            created,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            data_pack_size: DEFAULT_DATA_PACK_SIZE,
            tree_pack_size: DEFAULT_TREE_PACK_SIZE,
            profiles: vec![
                ChunkerProfile::file(),
                ChunkerProfile::stream(),
                ChunkerProfile::redis(),
            ],
            prune_grace_secs: DEFAULT_PRUNE_GRACE_SECS,
        }
    }

    /// The profile called `name`.
    pub fn profile(&self, name: &str) -> Option<&ChunkerProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Checks every bound of SPEC §6.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !(0..=MAX_COMPRESSION_LEVEL).contains(&self.compression_level) {
            return Err(FormatError::OutOfBounds {
                what: WHAT,
                field: "compression_level",
                value: self.compression_level as u64,
            });
        }
        if !(DATA_PACK_SIZE_MIN..=PACK_SIZE_MAX).contains(&self.data_pack_size) {
            return Err(FormatError::bounds(
                WHAT,
                "data_pack_size",
                self.data_pack_size,
            ));
        }
        if !(TREE_PACK_SIZE_MIN..=PACK_SIZE_MAX).contains(&self.tree_pack_size) {
            return Err(FormatError::bounds(
                WHAT,
                "tree_pack_size",
                self.tree_pack_size,
            ));
        }
        if !(1..=MAX_PROFILES).contains(&self.profiles.len()) {
            return Err(FormatError::bounds(
                WHAT,
                "chunker profile count",
                self.profiles.len(),
            ));
        }
        if !(PRUNE_GRACE_MIN..=PRUNE_GRACE_MAX).contains(&self.prune_grace_secs) {
            return Err(FormatError::bounds(
                WHAT,
                "prune_grace",
                self.prune_grace_secs,
            ));
        }
        for (i, p) in self.profiles.iter().enumerate() {
            p.validate(WHAT)?;
            if self.profiles[..i].iter().any(|q| q.name == p.name) {
                return Err(FormatError::corrupted(
                    WHAT,
                    format!("two chunker profiles named {:?}", p.name),
                ));
            }
        }
        Ok(())
    }

    /// The config object: plain header and sealed body. Validates first.
    pub fn encode(&self, keys: &RepoKeys, nonce_salt: [u8; 16]) -> Result<Vec<u8>, FormatError> {
        if keys.repo_id() != &self.repo_id {
            return Err(FormatError::corrupted(
                WHAT,
                "config repo_id differs from the keys' repo_id",
            ));
        }
        let body = self.try_encode_body()?;
        let mut out = Vec::with_capacity(CONFIG_HEADER_LEN + body.len() + 32);
        out.put_bytes(&CONFIG_MAGIC);
        out.put_u8(FORMAT_VERSION);
        out.put_bytes(&self.repo_id.0);
        out.extend_from_slice(&keys.seal_object(ObjectType::Config, nonce_salt, &body));
        Ok(out)
    }

    /// Reads the plain header only: checks magic and version, returns the repo id. No key needed.
    pub fn peek_repo_id(bytes: &[u8]) -> Result<Id, FormatError> {
        let mut r = Reader::new(bytes, WHAT);
        // A short prefix of the magic is a truncated config; anything else is not a config.
        if !bytes.starts_with(&CONFIG_MAGIC) && !CONFIG_MAGIC.starts_with(bytes) {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        if r.array::<8>()? != CONFIG_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        r.id()
    }

    /// Opens and parses the config. `keys` must be for the repo id in its header.
    pub fn decode(bytes: &[u8], keys: &RepoKeys) -> Result<Config, FormatError> {
        let repo_id = Config::peek_repo_id(bytes)?;
        if &repo_id != keys.repo_id() {
            return Err(FormatError::IdMismatch {
                what: "config repo_id",
                expected: keys.repo_id().to_hex(),
                actual: repo_id.to_hex(),
            });
        }
        let body = keys.open_object(ObjectType::Config, &bytes[CONFIG_HEADER_LEN..], WHAT)?;
        Config::decode_body(repo_id, &body)
    }

    /// The TLV body (plaintext of the envelope).
    ///
    /// # Panics
    ///
    /// If the config is invalid; [`Config::encode`] returns an error instead.
    pub fn encode_body(&self) -> Vec<u8> {
        match self.try_encode_body() {
            Ok(b) => b,
            Err(e) => panic!("Config::encode_body on an invalid config: {e}"),
        }
    }

    fn try_encode_body(&self) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        let mut w = TlvWriter::new(Vec::new(), WHAT);
        w.field(TAG_CREATED, &self.created.to_le_bytes())?;
        w.field(TAG_COMPRESSION, &self.compression_level.to_le_bytes())?;
        w.field(TAG_DATA_PACK_SIZE, &self.data_pack_size.to_le_bytes())?;
        w.field(TAG_TREE_PACK_SIZE, &self.tree_pack_size.to_le_bytes())?;
        let mut profiles = vec![self.profiles.len() as u8]; // validate() checked 1..=16
        for p in &self.profiles {
            p.encode_into(WHAT, &mut profiles)?;
        }
        w.field(TAG_PROFILES, &profiles)?;
        w.field(TAG_PRUNE_GRACE, &self.prune_grace_secs.to_le_bytes())?;
        Ok(w.finish())
    }

    /// Parses a TLV body and validates it.
    pub fn decode_body(repo_id: Id, body: &[u8]) -> Result<Config, FormatError> {
        let (mut created, mut level, mut data, mut tree, mut profiles) =
            (None, None, None, None, None);
        let mut prune_grace_secs = DEFAULT_PRUNE_GRACE_SECS;
        let mut tlv = TlvReader::new(body, WHAT);
        while let Some((tag, v)) = tlv.next_field()? {
            let mut r = Reader::new(v, WHAT);
            match tag {
                TAG_CREATED => {
                    expect_len(WHAT, tag, v, 8)?;
                    created = Some(r.i64()?);
                }
                TAG_COMPRESSION => {
                    expect_len(WHAT, tag, v, 4)?;
                    level = Some(r.i32()?);
                }
                TAG_DATA_PACK_SIZE => {
                    expect_len(WHAT, tag, v, 4)?;
                    data = Some(r.u32()?);
                }
                TAG_TREE_PACK_SIZE => {
                    expect_len(WHAT, tag, v, 4)?;
                    tree = Some(r.u32()?);
                }
                TAG_PROFILES => {
                    let n = r.u8()? as usize;
                    let mut list = Vec::with_capacity(n);
                    for _ in 0..n {
                        list.push(ChunkerProfile::decode_from(&mut r)?);
                    }
                    r.finish()?;
                    profiles = Some(list);
                }
                TAG_PRUNE_GRACE => {
                    expect_len(WHAT, tag, v, 8)?;
                    prune_grace_secs = r.u64()?;
                }
                _ => unknown_tag(WHAT, tag)?,
            }
        }
        let missing =
            |tag: u16| FormatError::corrupted(WHAT, format!("required tag {tag} is missing"));
        let config = Config {
            repo_id,
            created: created.ok_or_else(|| missing(TAG_CREATED))?,
            compression_level: level.ok_or_else(|| missing(TAG_COMPRESSION))?,
            data_pack_size: data.ok_or_else(|| missing(TAG_DATA_PACK_SIZE))?,
            tree_pack_size: tree.ok_or_else(|| missing(TAG_TREE_PACK_SIZE))?,
            profiles: profiles.ok_or_else(|| missing(TAG_PROFILES))?,
            prune_grace_secs,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use proptest::prelude::*;

    fn keys() -> RepoKeys {
        RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([1; 72]))
    }

    #[test]
    fn round_trip_and_peek() {
        let c = Config::new(Id([0x33; 32]), 1_700_000_000);
        let b = c.encode(&keys(), [0x44; 16]).unwrap();
        assert_eq!(Config::peek_repo_id(&b).unwrap(), c.repo_id);
        assert_eq!(Config::decode(&b, &keys()).unwrap(), c);
        assert_eq!(c.profile("stream").unwrap().params, ChunkerParams::STREAM);
        assert!(c.profile("nope").is_none());
    }

    #[test]
    fn tampering_and_wrong_repo_fail() {
        let c = Config::new(Id([0x33; 32]), 5);
        let b = c.encode(&keys(), [0x44; 16]).unwrap();
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x80;
            assert!(Config::decode(&bad, &keys()).is_err(), "byte {i}");
        }
        let other = RepoKeys::new(Id([0x34; 32]), keys().master().clone());
        let mut moved = b.clone();
        moved[9..41].copy_from_slice(&[0x34; 32]);
        assert_eq!(
            Config::decode(&moved, &other),
            Err(FormatError::AuthenticationFailed { what: WHAT })
        );
        assert!(matches!(
            Config::decode(&b[..40], &keys()),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            Config::peek_repo_id(b"CAIRNKEY"),
            Err(FormatError::BadMagic { .. })
        ));
        assert!(matches!(
            Config::peek_repo_id(b"CAIR"),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn body_rules() {
        let c = Config::new(Id::ZERO, 5);
        let body = c.encode_body();
        // Unknown optional tag at the end is ignored, unknown critical tag is not.
        let mut opt = body.clone();
        opt.extend_from_slice(&[0x00, 0x80, 1, 0, 0, 0, 9]);
        assert_eq!(Config::decode_body(Id::ZERO, &opt).unwrap(), c);
        let mut crit = body.clone();
        crit.extend_from_slice(&[0x07, 0x00, 0, 0, 0, 0]);
        assert_eq!(
            Config::decode_body(Id::ZERO, &crit),
            Err(FormatError::UnknownCriticalTag { what: WHAT, tag: 7 })
        );
        // Missing tag.
        assert!(Config::decode_body(Id::ZERO, &body[..14]).is_err());
        // Out-of-bounds values are rejected on encode and decode.
        for bad in [
            Config {
                compression_level: 20,
                ..c.clone()
            },
            Config {
                compression_level: -1,
                ..c.clone()
            },
            Config {
                data_pack_size: 1000,
                ..c.clone()
            },
            Config {
                tree_pack_size: (1 << 30) + 1,
                ..c.clone()
            },
            Config {
                profiles: vec![],
                ..c.clone()
            },
            Config {
                prune_grace_secs: 0,
                ..c.clone()
            },
            Config {
                prune_grace_secs: PRUNE_GRACE_MAX + 1,
                ..c.clone()
            },
            Config {
                profiles: vec![ChunkerProfile::file(), ChunkerProfile::file()],
                ..c.clone()
            },
            Config {
                profiles: vec![ChunkerProfile {
                    name: "é".into(),
                    params: ChunkerParams::FILE,
                }],
                ..c.clone()
            },
        ] {
            assert!(
                bad.encode(&RepoKeys::new(Id::ZERO, keys().master().clone()), [0; 16])
                    .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn prune_grace_is_optional_and_bounded() {
        let c = Config::new(Id::ZERO, 5);
        assert_eq!(c.prune_grace_secs, 43_200);
        let body = c.encode_body();
        // Tag 6 is the last field: tag u16 6, len u32 8, value u64.
        let field = body.len() - (6 + 8);
        assert_eq!(body[field..field + 6], [6, 0, 8, 0, 0, 0]);
        // Absent: the default.
        let old = Config::decode_body(Id::ZERO, &body[..field]).unwrap();
        assert_eq!(old.prune_grace_secs, DEFAULT_PRUNE_GRACE_SECS);
        assert_eq!(old, c);
        let with = |v: u64| {
            let mut b = body.clone();
            b[field + 6..].copy_from_slice(&v.to_le_bytes());
            Config::decode_body(Id::ZERO, &b)
        };
        assert_eq!(with(1).unwrap().prune_grace_secs, 1);
        assert_eq!(with(2_592_000).unwrap().prune_grace_secs, 2_592_000);
        for bad in [0, 2_592_001, u64::MAX] {
            assert_eq!(
                with(bad),
                Err(FormatError::OutOfBounds {
                    what: WHAT,
                    field: "prune_grace",
                    value: bad
                })
            );
        }
        // Wrong length.
        let mut short = body[..field].to_vec();
        short.extend_from_slice(&[6, 0, 4, 0, 0, 0, 1, 0, 0, 0]);
        assert!(matches!(
            Config::decode_body(Id::ZERO, &short),
            Err(FormatError::Corrupted { .. })
        ));
    }

    fn arb_profile() -> impl Strategy<Value = ChunkerProfile> {
        (
            "[a-z0-9_-]{1,20}",
            64u32..=(1 << 20),
            0u32..(3 << 20),
            0u32..(8 << 20),
        )
            .prop_map(|(name, min, a, m)| {
                let avg = (min + a).clamp(256, 4 << 20);
                let max = (avg + m).clamp(1024, 16 << 20);
                ChunkerProfile {
                    name,
                    params: ChunkerParams { min, avg, max },
                }
            })
    }

    fn arb_config() -> impl Strategy<Value = Config> {
        (
            any::<[u8; 32]>(),
            any::<i64>(),
            0i32..=19,
            DATA_PACK_SIZE_MIN..=PACK_SIZE_MAX,
            TREE_PACK_SIZE_MIN..=PACK_SIZE_MAX,
            proptest::collection::vec(arb_profile(), 1..16),
            PRUNE_GRACE_MIN..=PRUNE_GRACE_MAX,
        )
            .prop_map(
                |(
                    id,
                    created,
                    compression_level,
                    data_pack_size,
                    tree_pack_size,
                    mut profiles,
                    prune_grace_secs,
                )| {
                    let mut seen = std::collections::HashSet::new();
                    profiles.retain(|p| seen.insert(p.name.clone()));
                    Config {
                        repo_id: Id(id),
                        created,
                        compression_level,
                        data_pack_size,
                        tree_pack_size,
                        profiles,
                        prune_grace_secs,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(c in arb_config(), salt: [u8; 16]) {
            let keys = RepoKeys::new(c.repo_id, MasterKey::from_bytes([2; 72]));
            let b = c.encode(&keys, salt).unwrap();
            prop_assert_eq!(Config::decode(&b, &keys).unwrap(), c.clone());
            prop_assert_eq!(Config::decode_body(c.repo_id, &c.encode_body()).unwrap(), c);
        }

        #[test]
        fn decode_never_panics(b: Vec<u8>, prefix: bool) {
            let mut bytes = if prefix { Config::new(Id::ZERO, 0).encode_body() } else { Vec::new() };
            bytes.extend_from_slice(&b);
            let _ = Config::decode_body(Id::ZERO, &bytes);
            let _ = Config::decode(&bytes, &keys());
        }
    }
}
