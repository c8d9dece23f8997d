//! Ids: 32-byte BLAKE3 hashes, one newtype per kind of thing they name (SPEC §1).
//!
//! [`Id`] is the raw hash. [`BlobId`] names a blob (keyed hash of its plaintext); [`PackId`],
//! [`IndexId`], [`SnapshotId`] and [`KeyId`] name objects (unkeyed hash of their stored bytes, see
//! [`object_id`]). The newtypes keep a pack id from being looked up as a blob id by accident.

use std::fmt;

use crate::error::FormatError;

/// A 32-byte hash, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// All zeros: the id in the AAD of objects that cannot name themselves (SPEC §5).
    pub const ZERO: Id = Id([0; 32]);

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex digits (the form object names use).
    pub fn from_hex(s: &str) -> Result<Id, FormatError> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(FormatError::corrupted(
                "id",
                format!("{s:?} is not 64 lowercase hex digits"),
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| FormatError::corrupted("id", format!("{s:?}: {e}")))?;
        Ok(Id(out))
    }

    /// The first 8 hex digits, for messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.to_hex())
    }
}

impl From<[u8; 32]> for Id {
    fn from(b: [u8; 32]) -> Id {
        Id(b)
    }
}

/// `BLAKE3(bytes)`, unkeyed: the name of a pack, index file, snapshot or key file (SPEC §2).
pub fn object_id(bytes: &[u8]) -> Id {
    Id(*blake3::hash(bytes).as_bytes())
}

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub Id);

        impl $name {
            /// 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }

            /// Parses exactly 64 lowercase hex digits.
            pub fn from_hex(s: &str) -> Result<$name, FormatError> {
                Id::from_hex(s).map($name)
            }

            /// The first 8 hex digits, for messages.
            pub fn short(&self) -> String {
                self.0.short()
            }
        }

        impl From<Id> for $name {
            fn from(id: Id) -> $name {
                $name(id)
            }
        }

        impl From<$name> for Id {
            fn from(id: $name) -> Id {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.to_hex())
            }
        }
    };
}

id_newtype!(
    /// The id of a blob: `BLAKE3-keyed(id_key, plaintext)`.
    BlobId
);
id_newtype!(
    /// The id of a pack: `BLAKE3(pack bytes)`.
    PackId
);
id_newtype!(
    /// The id of an index file: `BLAKE3(index file bytes)`.
    IndexId
);
id_newtype!(
    /// The id of a snapshot: `BLAKE3(snapshot bytes)`.
    SnapshotId
);
id_newtype!(
    /// The id of a key file: `BLAKE3(key file bytes)`.
    KeyId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = Id([0xab; 32]);
        assert_eq!(id.to_hex(), "ab".repeat(32));
        assert_eq!(Id::from_hex(&id.to_hex()), Ok(id));
        assert_eq!(id.short(), "abababab");
        assert_eq!(BlobId(id).to_string(), id.to_hex());
        assert_eq!(PackId::from_hex(&id.to_hex()), Ok(PackId(id)));
        assert!(format!("{:?}", SnapshotId(id)).starts_with("SnapshotId(abab"));
    }

    #[test]
    fn from_hex_rejects_bad_input() {
        for s in [
            "",
            "ab",
            &"AB".repeat(32),
            &"g0".repeat(32),
            &"ab".repeat(33),
            &"é".repeat(32),
        ] {
            assert!(Id::from_hex(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn object_id_is_plain_blake3() {
        assert_eq!(
            object_id(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
