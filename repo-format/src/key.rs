//! Key files: the master key wrapped with a password (SPEC §4).
//!
//! ```text
//! "CAIRNKEY" | version 1 | kdf 1 | m_cost u32 | t_cost u32 | p_cost u32 | kdf_salt[32]
//! | created i64 | hostname u8 len + UTF-8 | username u8 len + UTF-8 | envelope (105 bytes)
//! ```
//!
//! The envelope's root key is `Argon2id(password, kdf_salt, m, t, p)`; its AAD is
//! `AAD(key, repo_id, zeros) ‖ every byte before the envelope`, so nothing in the header can be
//! changed without the envelope failing. [`KeyFile::decode`] validates the KDF parameters, so a
//! hostile file is rejected before [`KeyFile::open`] spends any memory or time on Argon2.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use rayon::iter::ParallelExtend;

use crate::crypto::{MasterKey, ObjectType, aad, open, seal};
use crate::error::FormatError;
use crate::format::{
    KDF_ARGON2ID, KDF_M_MAX, KDF_M_MIN, KDF_OUTPUT_LEN, KDF_P_MAX, KDF_P_MIN, KDF_T_MAX, KDF_T_MIN,
    KEY_ENVELOPE_LEN, KEY_FILE_FIXED_LEN, KEY_FILE_VERSION, KEY_MAGIC,
};
use crate::id::Id;
use crate::wire::{Put, Reader};

const WHAT: &str = "key file";

/// Argon2id cost parameters (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KdfParams {
    /// Memory in KiB, 8 ≤ m ≤ 4 GiB, and m ≥ 8·p.
    pub m_cost: u32,
    /// Passes, 1 ≤ t ≤ 64.
    pub t_cost: u32,
    /// Lanes, 1 ≤ p ≤ 16.
    pub p_cost: u32,
}

impl KdfParams {
    /// What `init` uses: 64 MiB, 3 passes, 4 lanes (RFC 9106's second recommended option).
    /// The lanes are computed in parallel, so on two cores the derivation takes ~30 % less time
    /// than with one lane, for the same memory and passes.
    pub const DEFAULT: Self = KdfParams {
        m_cost: 65_536,
        t_cost: 3,
        p_cost: 4,
    };
    /// The cheapest legal parameters (8 KiB, 1 pass, 1 lane): for tests only.
    pub const TEST: Self = KdfParams {
        m_cost: KDF_M_MIN,
        t_cost: KDF_T_MIN,
        p_cost: KDF_P_MIN,
    };

    /// `m_cost` KiB and `t_cost` passes, with the default number of lanes, or fewer when
    /// `m_cost` is too small for them (each lane needs 8 KiB).
    pub fn with_costs(m_cost: u32, t_cost: u32) -> Self {
        KdfParams {
            m_cost,
            t_cost,
            p_cost: (m_cost / 8).clamp(KDF_P_MIN, Self::DEFAULT.p_cost),
        }
    }

    /// Checks the bounds of SPEC §4.
    pub fn validate(&self) -> Result<(), FormatError> {
        if !(KDF_M_MIN..=KDF_M_MAX).contains(&self.m_cost) {
            return Err(FormatError::bounds(WHAT, "m_cost", self.m_cost));
        }
        if !(KDF_T_MIN..=KDF_T_MAX).contains(&self.t_cost) {
            return Err(FormatError::bounds(WHAT, "t_cost", self.t_cost));
        }
        if !(KDF_P_MIN..=KDF_P_MAX).contains(&self.p_cost) {
            return Err(FormatError::bounds(WHAT, "p_cost", self.p_cost));
        }
        if self.m_cost < 8 * self.p_cost {
            return Err(FormatError::corrupted(
                WHAT,
                format!("m_cost {} is below 8 * p_cost {}", self.m_cost, self.p_cost),
            ));
        }
        Ok(())
    }

    /// `Argon2id(password, salt)` with these parameters (validated first).
    fn derive(&self, password: &[u8], salt: &[u8; 32]) -> Result<[u8; 32], FormatError> {
        self.validate()?;
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KDF_OUTPUT_LEN))
            .map_err(|e| FormatError::corrupted(WHAT, format!("Argon2 parameters: {e}")))?;
        // The memory (64 MiB by default) is made by both cores: argon2's own allocation is
        // zeroed by one thread, a page fault at a time (30-40 ms of a 90 ms start here).
        let blocks = params.block_count();
        let mut memory: Vec<Block> = Vec::new();
        memory
            .try_reserve_exact(blocks)
            .map_err(|_| FormatError::OutOfMemory {
                what: WHAT,
                detail: format!(
                    "Argon2 needs {} KiB for this key file, which this system does not give; \
                     free some memory or open the repository on a larger machine",
                    self.m_cost
                ),
            })?;
        memory.par_extend(rayon::iter::repeat_n(Block::default(), blocks));
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory)
            .map_err(|e| FormatError::corrupted(WHAT, format!("Argon2: {e}")))?;
        Ok(out)
    }
}

/// A parsed key file (SPEC §4). Its fields are authenticated by [`KeyFile::open`], not before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    /// Argon2id parameters.
    pub params: KdfParams,
    /// Argon2id salt.
    pub kdf_salt: [u8; 32],
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Host that created the key file (at most 255 bytes).
    pub hostname: String,
    /// User that created the key file (at most 255 bytes).
    pub username: String,
    envelope: Vec<u8>,
}

/// The bytes before the envelope.
fn encode_header(
    params: KdfParams,
    kdf_salt: &[u8; 32],
    created: i64,
    hostname: &str,
    username: &str,
) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(
        KEY_FILE_FIXED_LEN + 2 + hostname.len() + username.len() + KEY_ENVELOPE_LEN,
    );
    out.put_bytes(&KEY_MAGIC);
    out.put_u8(KEY_FILE_VERSION);
    out.put_u8(KDF_ARGON2ID);
    out.put_u32(params.m_cost);
    out.put_u32(params.t_cost);
    out.put_u32(params.p_cost);
    out.put_bytes(kdf_salt);
    out.put_i64(created);
    for (field, s) in [("hostname length", hostname), ("username length", username)] {
        let len = u8::try_from(s.len()).map_err(|_| FormatError::bounds(WHAT, field, s.len()))?;
        out.put_u8(len);
        out.put_bytes(s.as_bytes());
    }
    Ok(out)
}

/// The envelope's associated data: `AAD(key, repo_id, zeros) ‖ header`.
fn key_aad(repo_id: &Id, header: &[u8]) -> Vec<u8> {
    let mut out = aad(ObjectType::Key, repo_id, &Id::ZERO).to_vec();
    out.extend_from_slice(header);
    out
}

impl KeyFile {
    /// Wraps `master` with `password`; returns the key file bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        repo_id: &Id,
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        kdf_salt: [u8; 32],
        nonce_salt: [u8; 16],
        created: i64,
        hostname: &str,
        username: &str,
    ) -> Result<Vec<u8>, FormatError> {
        params.validate()?;
        let mut out = encode_header(params, &kdf_salt, created, hostname, username)?;
        let kek = params.derive(password, &kdf_salt)?;
        let envelope = seal(&kek, &key_aad(repo_id, &out), nonce_salt, &master.encode());
        out.extend_from_slice(&envelope);
        Ok(out)
    }

    /// Parses a key file and validates its KDF parameters; runs no KDF.
    pub fn decode(bytes: &[u8]) -> Result<KeyFile, FormatError> {
        let mut r = Reader::new(bytes, WHAT);
        if r.array::<8>()? != KEY_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = r.u8()?;
        if version != KEY_FILE_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let kdf = r.u8()?;
        if kdf != KDF_ARGON2ID {
            return Err(FormatError::UnsupportedVersion {
                what: "key file KDF",
                version: kdf,
            });
        }
        let params = KdfParams {
            m_cost: r.u32()?,
            t_cost: r.u32()?,
            p_cost: r.u32()?,
        };
        params.validate()?;
        let kdf_salt = r.array()?;
        let created = r.i64()?;
        let mut name = |field: &str| -> Result<String, FormatError> {
            let len = r.u8()? as usize;
            String::from_utf8(r.bytes(len)?.to_vec())
                .map_err(|_| FormatError::corrupted(WHAT, format!("{field} is not UTF-8")))
        };
        let hostname = name("hostname")?;
        let username = name("username")?;
        let envelope = r.bytes(KEY_ENVELOPE_LEN)?.to_vec();
        r.finish()?;
        Ok(KeyFile {
            params,
            kdf_salt,
            created,
            hostname,
            username,
            envelope,
        })
    }

    /// The key file bytes again (what [`KeyFile::decode`] parsed).
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = encode_header(
            self.params,
            &self.kdf_salt,
            self.created,
            &self.hostname,
            &self.username,
        )?;
        out.extend_from_slice(&self.envelope);
        Ok(out)
    }

    /// Runs the KDF and opens the envelope. [`FormatError::AuthenticationFailed`] means a wrong
    /// password (or a tampered file, or one of another repository).
    pub fn open(&self, repo_id: &Id, password: &[u8]) -> Result<MasterKey, FormatError> {
        // Re-encoding the (public, possibly modified) fields gives the AAD: a modified field
        // fails authentication like a modified byte.
        let header = encode_header(
            self.params,
            &self.kdf_salt,
            self.created,
            &self.hostname,
            &self.username,
        )?;
        let kek = self.params.derive(password, &self.kdf_salt)?;
        let plain = open(&kek, &key_aad(repo_id, &header), &self.envelope, WHAT)?;
        MasterKey::decode(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (Id, MasterKey, Vec<u8>) {
        let repo = Id([0x33; 32]);
        let mk = MasterKey::from_bytes([5; 72]);
        let b = KeyFile::create(
            &repo,
            &mk,
            b"pw",
            KdfParams::TEST,
            [0x55; 32],
            [0x44; 16],
            1_700_000_000,
            "host",
            "user",
        )
        .unwrap();
        (repo, mk, b)
    }

    #[test]
    fn opens_with_right_password_only() {
        let (repo, mk, b) = sample();
        let kf = KeyFile::decode(&b).unwrap();
        assert_eq!(kf.open(&repo, b"pw").unwrap(), mk);
        assert_eq!(
            kf.open(&repo, b"px"),
            Err(FormatError::AuthenticationFailed { what: WHAT })
        );
        assert_eq!(
            kf.open(&Id([0x34; 32]), b"pw"),
            Err(FormatError::AuthenticationFailed { what: WHAT })
        );
        let mut renamed = kf.clone();
        renamed.hostname = "other".into();
        assert!(renamed.open(&repo, b"pw").is_err());
        assert_eq!(kf.encode().unwrap(), b);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let (repo, _, b) = sample();
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x01;
            let r = KeyFile::decode(&bad).and_then(|kf| kf.open(&repo, b"pw"));
            assert!(r.is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncated_is_truncated() {
        let (_, _, b) = sample();
        for n in 8..b.len() {
            assert!(KeyFile::decode(&b[..n]).is_err(), "{n}");
        }
        assert!(matches!(
            KeyFile::decode(&b[..b.len() - 1]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            KeyFile::decode(b"CAIRNCFG\x01"),
            Err(FormatError::BadMagic { .. })
        ));
    }

    #[test]
    fn hostile_params_rejected_before_kdf() {
        let (repo, _, b) = sample();
        // m = 4 GiB + 1 KiB, t = 64: if the KDF ran, this test would take minutes and 4 GiB.
        for (off, v) in [
            (10, KDF_M_MAX + 1),
            (14, 65),
            (18, 17),
            (10, 7),
            (14, 0),
            (18, 0),
        ] {
            let mut bad = b.clone();
            bad[off..off + 4].copy_from_slice(&u32::to_le_bytes(v));
            assert!(
                matches!(KeyFile::decode(&bad), Err(FormatError::OutOfBounds { .. })),
                "{off} {v}"
            );
        }
        let mut kf = KeyFile::decode(&b).unwrap();
        kf.params = KdfParams {
            m_cost: u32::MAX,
            t_cost: 64,
            p_cost: 1,
        };
        assert!(matches!(
            kf.open(&repo, b"pw"),
            Err(FormatError::OutOfBounds { .. })
        ));
        kf.params = KdfParams {
            m_cost: 8,
            t_cost: 1,
            p_cost: 2,
        };
        assert!(matches!(
            kf.open(&repo, b"pw"),
            Err(FormatError::Corrupted { .. })
        ));
        assert!(KdfParams::DEFAULT.validate().is_ok() && KdfParams::TEST.validate().is_ok());
    }

    #[test]
    fn lanes_follow_the_memory_asked_for() {
        assert_eq!(KdfParams::with_costs(65_536, 3), KdfParams::DEFAULT);
        assert_eq!(KdfParams::with_costs(8, 1), KdfParams::TEST);
        assert_eq!(KdfParams::with_costs(16, 2).p_cost, 2);
        assert_eq!(KdfParams::with_costs(31, 1).p_cost, 3);
        for m in [8, 9, 16, 24, 31, 32, 1024] {
            assert!(KdfParams::with_costs(m, 1).validate().is_ok(), "{m}");
        }
    }

    #[test]
    fn lanes_change_the_key_and_a_key_file_opens_with_its_own() {
        let mk = MasterKey::from_bytes([9; 72]);
        let repo = Id([3; 32]);
        let four = KdfParams::with_costs(32, 1);
        assert_eq!(four.p_cost, 4);
        let b4 = KeyFile::create(&repo, &mk, b"pw", four, [1; 32], [2; 16], 0, "h", "u").unwrap();
        let b1 = KeyFile::create(
            &repo,
            &mk,
            b"pw",
            KdfParams { p_cost: 1, ..four },
            [1; 32],
            [2; 16],
            0,
            "h",
            "u",
        )
        .unwrap();
        assert_ne!(
            b4[b4.len() - 105..],
            b1[b1.len() - 105..],
            "the lanes are part of the KDF"
        );
        let kf = KeyFile::decode(&b4).unwrap();
        assert_eq!(kf.params, four);
        assert_eq!(kf.open(&repo, b"pw").unwrap(), mk);
        let mut wrong = kf.clone();
        wrong.params.p_cost = 1;
        assert!(
            wrong.open(&repo, b"pw").is_err(),
            "opened with other lanes than it was made with"
        );
    }

    #[test]
    fn long_names_are_rejected() {
        let mk = MasterKey::from_bytes([5; 72]);
        let long = "x".repeat(256);
        let r = KeyFile::create(
            &Id::ZERO,
            &mk,
            b"",
            KdfParams::TEST,
            [0; 32],
            [0; 16],
            0,
            &long,
            "u",
        );
        assert!(matches!(r, Err(FormatError::OutOfBounds { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn round_trip(pw: Vec<u8>, salt: [u8; 32], nonce: [u8; 16], created: i64, host in "\\PC{0,40}", user in "[a-z]{0,20}") {
            let mk = MasterKey { enc_key: salt, id_key: [nonce[0]; 32], chunker_seed: created as u64 | 1 };
            let repo = Id([nonce[1]; 32]);
            let b = KeyFile::create(&repo, &mk, &pw, KdfParams::TEST, salt, nonce, created, &host, &user).unwrap();
            let kf = KeyFile::decode(&b).unwrap();
            prop_assert_eq!(kf.params, KdfParams::TEST);
            prop_assert_eq!((kf.created, &kf.hostname, &kf.username), (created, &host, &user));
            prop_assert_eq!(kf.open(&repo, &pw).unwrap(), mk);
        }

        #[test]
        fn decode_never_panics(mut b: Vec<u8>, magic: bool) {
            if magic && b.len() >= 8 {
                b[..8].copy_from_slice(&KEY_MAGIC);
            }
            let _ = KeyFile::decode(&b);
        }
    }
}
