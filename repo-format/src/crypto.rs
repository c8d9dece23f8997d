//! The master key, envelopes and the keys of an opened repository (SPEC §4, §5).
//!
//! An envelope is `nonce_salt[16] | AES-256-GCM ciphertext | tag[16]`. Each envelope gets its own
//! subkey, `BLAKE3.derive_key(context, root_key ‖ nonce_salt)`, so the GCM nonce can be a
//! constant zero: every subkey encrypts exactly one message. The associated data ([`aad`]) binds
//! the envelope to its repository, its object type and (for blobs) its id.
//!
//! Randomness is never drawn here: callers pass nonce salts in, so tests are deterministic.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::error::FormatError;
use crate::format::{
    AAD_LEN, AAD_PREFIX, ENVELOPE_OVERHEAD, ENVELOPE_SUBKEY_CONTEXT, FORMAT_VERSION,
    MASTER_KEY_LEN, MASTER_KEY_VERSION, NONCE_SALT_LEN, TAG_LEN,
};
use crate::id::{BlobId, Id};
use crate::wire::{Put, Reader};

/// The random secrets of a repository (SPEC §4), stored only wrapped in key files.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    /// Root key of every object envelope.
    pub enc_key: [u8; 32],
    /// BLAKE3 key for blob ids.
    pub id_key: [u8; 32],
    /// FastCDC gear seed; never zero.
    pub chunker_seed: u64,
}

impl MasterKey {
    /// Builds a master key from 72 random bytes (`enc_key`, `id_key`, `chunker_seed` in that
    /// order). A zero seed (probability 2^-64) is replaced by 1, since the SPEC forbids it.
    pub fn from_bytes(random: [u8; 72]) -> MasterKey {
        let mut enc_key = [0u8; 32];
        let mut id_key = [0u8; 32];
        let mut seed = [0u8; 8];
        enc_key.copy_from_slice(&random[..32]);
        id_key.copy_from_slice(&random[32..64]);
        seed.copy_from_slice(&random[64..]);
        let chunker_seed = u64::from_le_bytes(seed).max(1);
        MasterKey {
            enc_key,
            id_key,
            chunker_seed,
        }
    }

    /// The 73-byte plaintext that key files wrap.
    pub fn encode(&self) -> [u8; MASTER_KEY_LEN] {
        let mut v = Vec::with_capacity(MASTER_KEY_LEN);
        v.put_u8(MASTER_KEY_VERSION);
        v.put_bytes(&self.enc_key);
        v.put_bytes(&self.id_key);
        v.put_u64(self.chunker_seed);
        let mut out = [0u8; MASTER_KEY_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Parses the 73-byte plaintext; rejects other lengths, versions and a zero seed.
    pub fn decode(b: &[u8]) -> Result<MasterKey, FormatError> {
        const WHAT: &str = "master key";
        let mut r = Reader::new(b, WHAT);
        let version = r.u8()?;
        if version != MASTER_KEY_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let enc_key = r.array()?;
        let id_key = r.array()?;
        let chunker_seed = r.u64()?;
        r.finish()?;
        if chunker_seed == 0 {
            return Err(FormatError::bounds(WHAT, "chunker_seed", 0u64));
        }
        Ok(MasterKey {
            enc_key,
            id_key,
            chunker_seed,
        })
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey { <secret> }")
    }
}

/// What an envelope holds; byte 6 of its AAD (SPEC §5).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// The config body.
    Config = 1,
    /// A key file's master key.
    Key = 2,
    /// A data blob.
    DataBlob = 3,
    /// A tree blob (tree or content list).
    TreeBlob = 4,
    /// A pack header.
    PackHeader = 5,
    /// An index file.
    Index = 6,
    /// A snapshot.
    Snapshot = 7,
    /// A prune plan (SPEC §17).
    Plan = 8,
    /// A prune lease (SPEC §17); its AAD id is the lease number, see
    /// [`lease_aad_id`](crate::lease::lease_aad_id).
    Lease = 9,
}

/// `"CAIRN" ‖ version ‖ type ‖ repo_id ‖ id`: the associated data of an envelope (SPEC §5).
pub fn aad(t: ObjectType, repo_id: &Id, id: &Id) -> [u8; AAD_LEN] {
    let mut out = [0u8; AAD_LEN];
    out[..5].copy_from_slice(&AAD_PREFIX);
    out[5] = FORMAT_VERSION;
    out[6] = t as u8;
    out[7..39].copy_from_slice(&repo_id.0);
    out[39..].copy_from_slice(&id.0);
    out
}

/// The subkey of one envelope: `BLAKE3.derive_key(context, root_key ‖ nonce_salt)`.
fn envelope_subkey(root_key: &[u8; 32], nonce_salt: &[u8; NONCE_SALT_LEN]) -> [u8; 32] {
    let mut material = [0u8; 32 + NONCE_SALT_LEN];
    material[..32].copy_from_slice(root_key);
    material[32..].copy_from_slice(nonce_salt);
    blake3::derive_key(ENVELOPE_SUBKEY_CONTEXT, &material)
}

/// The AES-256-GCM instance of one envelope (ring's implementation: AES-NI and CLMUL or VAES
/// assembly where the CPU has them).
fn envelope_cipher(root_key: &[u8; 32], nonce_salt: &[u8; NONCE_SALT_LEN]) -> LessSafeKey {
    // A 32-byte key is the only thing UnboundKey::new checks for AES-256-GCM.
    let key = UnboundKey::new(&AES_256_GCM, &envelope_subkey(root_key, nonce_salt))
        .expect("a 32-byte AES-256-GCM key");
    LessSafeKey::new(key)
}

/// The constant GCM nonce: safe because every subkey encrypts one message.
fn zero_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; 12])
}

/// Seals `plaintext` into a new envelope.
///
/// # Panics
///
/// If `plaintext` is longer than AES-GCM's limit of 64 GiB (see [`seal_into`]).
pub fn seal(root_key: &[u8; 32], aad: &[u8], nonce_salt: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + ENVELOPE_OVERHEAD);
    seal_into(root_key, aad, nonce_salt, plaintext, &mut out);
    out
}

/// Seals `plaintext` into an envelope appended to `out` (encrypting in place there).
///
/// # Panics
///
/// If `plaintext` is longer than AES-GCM's limit of 2^36 - 32 bytes (64 GiB). cairn's
/// plaintexts are chunks (≤ 16 MiB), headers (≤ 16 MiB) and bodies (≤ 1 GiB).
pub fn seal_into(
    root_key: &[u8; 32],
    aad: &[u8],
    nonce_salt: [u8; 16],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(plaintext.len() + ENVELOPE_OVERHEAD);
    out.extend_from_slice(&nonce_salt);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = envelope_cipher(root_key, &nonce_salt)
        .seal_in_place_separate_tag(zero_nonce(), Aad::from(aad), &mut out[start..])
        // ring fails only for plaintexts over GCM's 64 GiB limit, documented above as a panic.
        .expect("envelope plaintext is under the AES-GCM limit of 64 GiB");
    out.extend_from_slice(tag.as_ref());
}

/// Opens an envelope; [`FormatError::AuthenticationFailed`] if the key, the AAD or any byte is
/// wrong.
pub fn open(
    root_key: &[u8; 32],
    aad: &[u8],
    envelope: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    if envelope.len() < ENVELOPE_OVERHEAD {
        return Err(FormatError::Truncated {
            what,
            needed: ENVELOPE_OVERHEAD,
            got: envelope.len(),
        });
    }
    let (salt, sealed) = envelope.split_at(NONCE_SALT_LEN);
    let mut nonce_salt = [0u8; NONCE_SALT_LEN];
    nonce_salt.copy_from_slice(salt);
    // ring opens `ciphertext ‖ tag` in place and leaves the plaintext in front.
    let mut buf = sealed.to_vec();
    let plain_len = envelope_cipher(root_key, &nonce_salt)
        .open_in_place(zero_nonce(), Aad::from(aad), &mut buf)
        .map_err(|_| FormatError::AuthenticationFailed { what })?
        .len();
    debug_assert_eq!(plain_len, sealed.len() - TAG_LEN);
    buf.truncate(plain_len);
    Ok(buf)
}

/// Everything needed to read and write a repository's objects once a key file has been opened.
#[derive(Clone)]
pub struct RepoKeys {
    repo_id: Id,
    master: MasterKey,
}

impl RepoKeys {
    /// The keys of repository `repo_id`.
    pub fn new(repo_id: Id, master: MasterKey) -> RepoKeys {
        RepoKeys { repo_id, master }
    }

    /// The repository id (from the config's plain header).
    pub fn repo_id(&self) -> &Id {
        &self.repo_id
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The FastCDC gear seed.
    pub fn chunker_seed(&self) -> u64 {
        self.master.chunker_seed
    }

    /// `BLAKE3-keyed(id_key, plaintext)`: the id of a blob.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(Id(
            *blake3::keyed_hash(&self.master.id_key, plaintext).as_bytes()
        ))
    }

    /// Seals a whole object (config body, pack header, index, snapshot, plan) under
    /// `AAD(t, repo_id, zeros)`.
    pub fn seal_object(&self, t: ObjectType, nonce_salt: [u8; 16], plaintext: &[u8]) -> Vec<u8> {
        seal(
            &self.master.enc_key,
            &aad(t, &self.repo_id, &Id::ZERO),
            nonce_salt,
            plaintext,
        )
    }

    /// Opens what [`RepoKeys::seal_object`] sealed.
    pub fn open_object(
        &self,
        t: ObjectType,
        envelope: &[u8],
        what: &'static str,
    ) -> Result<Vec<u8>, FormatError> {
        open(
            &self.master.enc_key,
            &aad(t, &self.repo_id, &Id::ZERO),
            envelope,
            what,
        )
    }
}

impl fmt::Debug for RepoKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoKeys")
            .field("repo_id", &self.repo_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROOT: [u8; 32] = [0x11; 32];

    #[test]
    fn aad_layout() {
        let a = aad(ObjectType::DataBlob, &Id([0x33; 32]), &Id([0x22; 32]));
        assert_eq!(&a[..7], b"CAIRN\x01\x03");
        assert_eq!(a[7..39], [0x33; 32]);
        assert_eq!(a[39..], [0x22; 32]);
    }

    #[test]
    fn master_key_rejects_bad_bytes() {
        let mk = MasterKey::from_bytes([7; 72]);
        let b = mk.encode();
        assert!(matches!(
            MasterKey::decode(&b[..72]),
            Err(FormatError::Truncated { .. })
        ));
        let mut long = b.to_vec();
        long.push(0);
        assert!(MasterKey::decode(&long).is_err());
        let mut v2 = b;
        v2[0] = 2;
        assert!(matches!(
            MasterKey::decode(&v2),
            Err(FormatError::UnsupportedVersion { .. })
        ));
        let mut zero = b;
        zero[65..].fill(0);
        assert!(matches!(
            MasterKey::decode(&zero),
            Err(FormatError::OutOfBounds { .. })
        ));
        assert_eq!(MasterKey::from_bytes([0; 72]).chunker_seed, 1);
        assert!(!format!("{mk:?}").contains('7'));
    }

    #[test]
    fn envelope_rejects_tampering_and_wrong_context() {
        let env = seal(&ROOT, b"aad", [0x44; 16], b"hello");
        assert_eq!(env.len(), 5 + ENVELOPE_OVERHEAD);
        assert_eq!(open(&ROOT, b"aad", &env, "t").unwrap(), b"hello");
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 1;
            assert_eq!(
                open(&ROOT, b"aad", &bad, "t"),
                Err(FormatError::AuthenticationFailed { what: "t" })
            );
        }
        assert!(open(&ROOT, b"aae", &env, "t").is_err());
        assert!(open(&[0x12; 32], b"aad", &env, "t").is_err());
        assert!(matches!(
            open(&ROOT, b"aad", &env[..31], "t"),
            Err(FormatError::Truncated { .. })
        ));
        assert!(open(&ROOT, b"aad", &env[..env.len() - 1], "t").is_err());
    }

    #[test]
    fn objects_are_bound_to_repo_and_type() {
        let keys = RepoKeys::new(Id([0x33; 32]), MasterKey::from_bytes([9; 72]));
        let env = keys.seal_object(ObjectType::Snapshot, [1; 16], b"x");
        assert_eq!(
            keys.open_object(ObjectType::Snapshot, &env, "s").unwrap(),
            b"x"
        );
        assert!(keys.open_object(ObjectType::Index, &env, "s").is_err());
        let other = RepoKeys::new(Id([0x34; 32]), keys.master().clone());
        assert_eq!(
            other.open_object(ObjectType::Snapshot, &env, "s"),
            Err(FormatError::AuthenticationFailed { what: "s" })
        );
    }

    proptest! {
        #[test]
        fn master_key_round_trip(random in proptest::array::uniform32(any::<u8>()), seed in 1u64..) {
            let mk = MasterKey { enc_key: random, id_key: [random[0]; 32], chunker_seed: seed };
            prop_assert_eq!(MasterKey::decode(&mk.encode()).unwrap(), mk);
        }

        #[test]
        fn envelope_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..2000), salt: [u8; 16], aad: Vec<u8>) {
            let env = seal(&ROOT, &aad, salt, &pt);
            prop_assert_eq!(&env[..16], &salt[..]);
            prop_assert_eq!(open(&ROOT, &aad, &env, "t").unwrap(), pt);
        }

        /// ring's envelopes are byte for byte what RustCrypto's independent aes-gcm computes,
        /// both ways: the choice of implementation never changes the format.
        #[test]
        fn envelopes_match_an_independent_aes_gcm(pt in proptest::collection::vec(any::<u8>(), 0..5000), salt: [u8; 16], aad: Vec<u8>, root: [u8; 32]) {
            use aes_gcm::aead::AeadInPlace;
            use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce as GcmNonce};
            let subkey = envelope_subkey(&root, &salt);
            let other = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&subkey));
            let mut expected = salt.to_vec();
            let mut body = pt.clone();
            let tag = other.encrypt_in_place_detached(GcmNonce::from_slice(&[0; 12]), &aad, &mut body).unwrap();
            expected.extend_from_slice(&body);
            expected.extend_from_slice(&tag);
            let env = seal(&root, &aad, salt, &pt);
            prop_assert_eq!(&env, &expected);
            let mut ct = env[16..env.len() - 16].to_vec();
            other
                .decrypt_in_place_detached(GcmNonce::from_slice(&[0; 12]), &aad, &mut ct, aes_gcm::Tag::from_slice(&env[env.len() - 16..]))
                .unwrap();
            prop_assert_eq!(ct, pt);
        }

        #[test]
        fn open_never_panics(env: Vec<u8>) {
            let _ = open(&ROOT, b"", &env, "t");
        }

        #[test]
        fn master_key_decode_never_panics(b: Vec<u8>) {
            let _ = MasterKey::decode(&b);
        }
    }
}
