//! Prune leases (SPEC §17): the create-only objects through which prune runs take turns.
//!
//! ```text
//! stored at leases/<number as exactly 20 decimal digits, zero-padded>; envelope, root enc_key,
//! AAD(lease = 9, repo_id, number u64 LE ‖ 24 zero bytes), of
//! plaintext: version u8 = 1 | TLV record (§11):
//!   1 number: u64        2 holder: 16 random bytes of the prune run   3 state: u8, 0 held, 1 released
//!   4 created: i64 Unix ns (writer's clock)   5 ttl_secs: u64 ≥ 1   6 hostname: UTF-8   7 pid: u32
//! ```
//!
//! Every tag is required; the plaintext is at most 64 KiB. The lease number is in the AAD, so a
//! lease copied under another name fails authentication; [`Lease::decode`] also checks that the
//! `number` field equals the number the caller expects (the number of the name it read).

use crate::crypto::{ObjectType, RepoKeys, aad, open, seal};
use crate::error::FormatError;
use crate::format::{
    ENVELOPE_OVERHEAD, LEASE_HOLDER_LEN, LEASE_NAME_LEN, LEASE_VERSION, MAX_LEASE_BODY,
};
use crate::id::Id;
use crate::tlv::{TlvReader, TlvWriter, expect_len, unknown_tag};
use crate::wire::Reader;

const WHAT: &str = "prune lease";

const TAG_NUMBER: u16 = 1;
const TAG_HOLDER: u16 = 2;
const TAG_STATE: u16 = 3;
const TAG_CREATED: u16 = 4;
const TAG_TTL: u16 = 5;
const TAG_HOSTNAME: u16 = 6;
const TAG_PID: u16 = 7;

/// The object name of lease `n`: exactly 20 decimal digits, zero-padded, so names sort by number.
pub fn lease_name(n: u64) -> String {
    format!("{n:0width$}", width = LEASE_NAME_LEN)
}

/// The number a lease name stands for: `Some` only for exactly 20 ASCII digits whose value fits
/// in a u64 (the inverse of [`lease_name`]).
pub fn parse_lease_name(s: &str) -> Option<u64> {
    if s.len() != LEASE_NAME_LEN || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The id in a lease's AAD: the number, u64 little-endian, then 24 zero bytes (SPEC §5).
pub fn lease_aad_id(n: u64) -> Id {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&n.to_le_bytes());
    Id(id)
}

/// Whether a lease is still held (SPEC §17, tag 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// A prune run holds the lease (0).
    Held,
    /// The run finished and let go of it (1).
    Released,
}

impl LeaseState {
    fn to_u8(self) -> u8 {
        match self {
            LeaseState::Held => 0,
            LeaseState::Released => 1,
        }
    }

    fn from_u8(v: u8) -> Result<LeaseState, FormatError> {
        match v {
            0 => Ok(LeaseState::Held),
            1 => Ok(LeaseState::Released),
            x => Err(FormatError::corrupted(WHAT, format!("unknown state {x}"))),
        }
    }
}

/// A prune lease (SPEC §17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease number; also the object's name ([`lease_name`]).
    pub number: u64,
    /// Random token of the prune run that wrote the lease.
    pub holder: [u8; LEASE_HOLDER_LEN],
    /// Held or released.
    pub state: LeaseState,
    /// When it was written, Unix nanoseconds on the writer's clock.
    pub created_ns: i64,
    /// How long the lease is valid, seconds (≥ 1).
    pub ttl_secs: u64,
    /// The writer's host name.
    pub hostname: String,
    /// The writer's process id.
    pub pid: u32,
}

impl Lease {
    /// The sealed lease, bound to its number by the AAD. Fails if `ttl_secs` is 0 or the
    /// plaintext exceeds 64 KiB (a host name that long).
    pub fn encode(&self, keys: &RepoKeys, nonce_salt: [u8; 16]) -> Result<Vec<u8>, FormatError> {
        let body = self.encode_body()?;
        Ok(seal(
            &keys.master().enc_key,
            &aad(
                ObjectType::Lease,
                keys.repo_id(),
                &lease_aad_id(self.number),
            ),
            nonce_salt,
            &body,
        ))
    }

    /// Opens and parses the lease stored under the name of `expected_number`. A lease written
    /// under another number fails authentication; one whose `number` field differs anyway is
    /// corrupted.
    pub fn decode(
        keys: &RepoKeys,
        bytes: &[u8],
        expected_number: u64,
    ) -> Result<Lease, FormatError> {
        if bytes.len() > MAX_LEASE_BODY + ENVELOPE_OVERHEAD {
            return Err(FormatError::bounds(WHAT, "size", bytes.len()));
        }
        let body = open(
            &keys.master().enc_key,
            &aad(
                ObjectType::Lease,
                keys.repo_id(),
                &lease_aad_id(expected_number),
            ),
            bytes,
            WHAT,
        )?;
        let lease = Lease::decode_body(&body)?;
        if lease.number != expected_number {
            return Err(FormatError::corrupted(
                WHAT,
                format!(
                    "lease number {} stored as lease {expected_number}",
                    lease.number
                ),
            ));
        }
        Ok(lease)
    }

    /// The plaintext: version byte and TLV record.
    pub fn encode_body(&self) -> Result<Vec<u8>, FormatError> {
        if self.ttl_secs == 0 {
            return Err(FormatError::bounds(WHAT, "ttl_secs", 0u64));
        }
        let mut w = TlvWriter::new(vec![LEASE_VERSION], WHAT);
        w.field(TAG_NUMBER, &self.number.to_le_bytes())?;
        w.field(TAG_HOLDER, &self.holder)?;
        w.field(TAG_STATE, &[self.state.to_u8()])?;
        w.field(TAG_CREATED, &self.created_ns.to_le_bytes())?;
        w.field(TAG_TTL, &self.ttl_secs.to_le_bytes())?;
        w.field(TAG_HOSTNAME, self.hostname.as_bytes())?;
        w.field(TAG_PID, &self.pid.to_le_bytes())?;
        let body = w.finish();
        if body.len() > MAX_LEASE_BODY {
            return Err(FormatError::bounds(WHAT, "body size", body.len()));
        }
        Ok(body)
    }

    /// Parses a plaintext (without checking the number against a name; [`Lease::decode`] does).
    pub fn decode_body(b: &[u8]) -> Result<Lease, FormatError> {
        if b.len() > MAX_LEASE_BODY {
            return Err(FormatError::bounds(WHAT, "body size", b.len()));
        }
        let mut r = Reader::new(b, WHAT);
        let version = r.u8()?;
        if version != LEASE_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version,
            });
        }
        let (mut number, mut holder, mut state, mut created) = (None, None, None, None);
        let (mut ttl, mut hostname, mut pid) = (None, None, None);
        let mut tlv = TlvReader::new(r.rest(), WHAT);
        while let Some((tag, v)) = tlv.next_field()? {
            let mut r = Reader::new(v, WHAT);
            match tag {
                TAG_NUMBER => {
                    expect_len(WHAT, tag, v, 8)?;
                    number = Some(r.u64()?);
                }
                TAG_HOLDER => {
                    expect_len(WHAT, tag, v, LEASE_HOLDER_LEN)?;
                    holder = Some(r.array()?);
                }
                TAG_STATE => {
                    expect_len(WHAT, tag, v, 1)?;
                    state = Some(LeaseState::from_u8(r.u8()?)?);
                }
                TAG_CREATED => {
                    expect_len(WHAT, tag, v, 8)?;
                    created = Some(r.i64()?);
                }
                TAG_TTL => {
                    expect_len(WHAT, tag, v, 8)?;
                    let t = r.u64()?;
                    if t == 0 {
                        return Err(FormatError::bounds(WHAT, "ttl_secs", 0u64));
                    }
                    ttl = Some(t);
                }
                TAG_HOSTNAME => {
                    hostname = Some(
                        String::from_utf8(v.to_vec())
                            .map_err(|_| FormatError::corrupted(WHAT, "hostname is not UTF-8"))?,
                    );
                }
                TAG_PID => {
                    expect_len(WHAT, tag, v, 4)?;
                    pid = Some(r.u32()?);
                }
                _ => unknown_tag(WHAT, tag)?,
            }
        }
        let missing =
            |tag: u16| FormatError::corrupted(WHAT, format!("required tag {tag} is missing"));
        Ok(Lease {
            number: number.ok_or_else(|| missing(TAG_NUMBER))?,
            holder: holder.ok_or_else(|| missing(TAG_HOLDER))?,
            state: state.ok_or_else(|| missing(TAG_STATE))?,
            created_ns: created.ok_or_else(|| missing(TAG_CREATED))?,
            ttl_secs: ttl.ok_or_else(|| missing(TAG_TTL))?,
            hostname: hostname.ok_or_else(|| missing(TAG_HOSTNAME))?,
            pid: pid.ok_or_else(|| missing(TAG_PID))?,
        })
    }
}

#[cfg(test)]
mod tests;
