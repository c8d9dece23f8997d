//! Key files (SPEC §4): listing them, adding one for a new password, removing one, and
//! changing the password of the key that opened the repository.
//!
//! Every key file wraps the same master key, so adding or removing one never touches data,
//! index files or snapshots: only `keys/` changes. Key files are content-addressed like the
//! other objects (`keys/<BLAKE3 of the bytes>`), written create-only and checked against their
//! name whenever they are read.
//!
//! | operation | writes | refuses |
//! |---|---|---|
//! | [`list_keys`] | nothing | never: a damaged key file is listed as damaged |
//! | [`add_key`] | one new key file, read back and opened before returning | bad KDF parameters, names over 255 bytes |
//! | [`remove_key`] | deletes one key file | the only key; the key that opened this session |
//! | [`change_password`] | a new key file, *then* deletes the current one | as [`add_key`] |
//!
//! [`change_password`] writes before it deletes, so a crash between the two leaves two keys
//! that both open the repository, never zero. The new key is read back and opened with the
//! new password before the old one goes.
//!
//! Why a key file cannot be limited (e.g. backup-only) is SPEC §4: every key file unwraps the
//! same symmetric master key, so a limit written in one could not be enforced.

use repo_format::{Id, KdfParams, KeyFile, MasterKey};

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, now_unix, random_bytes};

/// One key file, as [`list_keys`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The key file's id (its name under `keys/`).
    pub id: Id,
    /// Whether this key file opened the repository in this session.
    pub current: bool,
    /// What the key file says about itself, or why it cannot be read.
    pub state: KeyState,
}

/// Whether a listed key file could be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// The key file parses; its fields are authenticated only for the current key (the others
    /// would need their password).
    Readable(KeyDetails),
    /// The key file is damaged (its bytes do not hash to its name, or do not parse): why.
    Damaged(String),
}

/// The public fields of a key file (SPEC §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDetails {
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Host that created the key file.
    pub hostname: String,
    /// User that created the key file.
    pub username: String,
    /// Argon2id parameters.
    pub params: KdfParams,
}

/// Options for [`add_key`] and [`change_password`].
#[derive(Clone, Debug)]
pub struct AddKeyOptions {
    /// Argon2id parameters of the new key file.
    pub kdf: KdfParams,
    /// Host name recorded in the new key file (at most 255 bytes).
    pub hostname: String,
    /// User name recorded in the new key file (at most 255 bytes).
    pub username: String,
}

impl Default for AddKeyOptions {
    fn default() -> Self {
        AddKeyOptions {
            kdf: KdfParams::DEFAULT,
            hostname: crate::host::hostname(),
            username: crate::host::username(),
        }
    }
}

/// What [`change_password`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordChange {
    /// The new key file (opens with the new password).
    pub added: Id,
    /// The key file that opened the repository, now deleted.
    pub removed: Id,
}

/// Every key file of the repository: readable ones oldest first (ties by id), then damaged
/// ones by id. A key file deleted between the listing and its read is left out; a storage
/// failure fails the listing.
pub fn list_keys(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for id in repo.list_ids(FileType::Key)? {
        let state = match repo.get_object(FileType::Key, &id) {
            Ok(bytes) => match KeyFile::decode(&bytes) {
                Ok(k) => KeyState::Readable(KeyDetails {
                    created: k.created,
                    hostname: k.hostname,
                    username: k.username,
                    params: k.params,
                }),
                Err(e) => KeyState::Damaged(e.to_string()),
            },
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                KeyState::Damaged(crate::restorer::error_chain(&e))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push(KeyInfo {
            current: id == *repo.key_id(),
            id,
            state,
        });
    }
    out.sort_by(|a, b| {
        let key = |k: &KeyInfo| match &k.state {
            KeyState::Readable(d) => (0, d.created, k.id),
            KeyState::Damaged(_) => (1, 0, k.id),
        };
        key(a).cmp(&key(b))
    });
    Ok(out)
}

/// Writes a new key file that wraps the repository's master key with `password`, reads it back
/// and checks that it opens with `password` to the same master key; returns its id.
pub fn add_key(repo: &Repository, password: &[u8], opts: &AddKeyOptions) -> Result<Id> {
    opts.kdf.validate().map_err(|e| {
        Error::with_source(
            ErrorKind::InvalidInput,
            "invalid key derivation parameters for the new key",
            e,
        )
    })?;
    for (what, name) in [("host", &opts.hostname), ("user", &opts.username)] {
        if name.len() > 255 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the {what} name for the new key is {} bytes long; a key file holds at most 255",
                    name.len()
                ),
            ));
        }
    }
    let keys = repo.keys();
    let bytes = KeyFile::create(
        keys.repo_id(),
        keys.master(),
        password,
        opts.kdf,
        random_bytes::<32>()?,
        random_bytes::<16>()?,
        now_unix(),
        &opts.hostname,
        &opts.username,
    )
    .map_err(|e| {
        Error::with_source(ErrorKind::InvalidInput, "cannot create the new key file", e)
    })?;
    let id = repo
        .put_object(FileType::Key, bytes)
        .map_err(|e| Error::with_source(e.kind(), "cannot write the new key file", e))?;
    verify_written(repo, &id, password)?;
    Ok(id)
}

/// Reads key file `id` back (its name checked) and opens it with `password`: the bytes on the
/// storage, not the ones in memory, must give the repository's master key.
fn verify_written(repo: &Repository, id: &Id, password: &[u8]) -> Result<()> {
    let hex = id.to_hex();
    let bytes = repo.get_object(FileType::Key, id).map_err(|e| {
        Error::with_source(
            e.kind(),
            format!("key file {hex} was written but cannot be read back"),
            e,
        )
    })?;
    let opened: std::result::Result<MasterKey, _> =
        KeyFile::decode(&bytes).and_then(|k| k.open(repo.keys().repo_id(), password));
    match opened {
        Ok(master) if master == *repo.keys().master() => Ok(()),
        Ok(_) => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "key file {hex} was written but opens to a different master key; remove it with \
                 `cairn key remove {hex}`"
            ),
        )),
        Err(e) => Err(Error::format(
            format!(
                "key file {hex} was written but does not open with the new password as read \
                 back; remove it with `cairn key remove {hex}`"
            ),
            e,
        )),
    }
}

/// Finds a key file by full id or unique id prefix (any case).
pub fn resolve_key(repo: &Repository, spec: &str) -> Result<Id> {
    repo.resolve_prefix(FileType::Key, spec, "key", "see `cairn key list`")
}

/// Deletes key file `id`. Refuses the repository's only key, and the key that opened this
/// session (as restic does): open the repository with another key's password to remove it,
/// or use [`change_password`] to replace it.
pub fn remove_key(repo: &Repository, id: &Id) -> Result<()> {
    let listed = repo.list_ids(FileType::Key)?;
    let hex = id.to_hex();
    let loc = repo.location();
    if !listed.contains(id) {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("there is no key {hex} in {loc} (`cairn key list` shows them)"),
        ));
    }
    if listed.len() == 1 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key {} is the only key of {loc}: without it the repository could never be \
                 opened again; add another with `cairn key add` first (or change its password \
                 with `cairn key passwd`)",
                id.short()
            ),
        ));
    }
    let current = repo.key_id();
    if id == current {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "key {} opened the repository in this session and cannot be removed: open with \
                 another key's password to remove this one (or use `cairn key passwd` to replace \
                 it)",
                id.short()
            ),
        ));
    }
    // The current key is the one known to open the repository. If it is gone (another process
    // removed it), removing this one might leave no key that opens: refuse.
    if !listed.contains(current) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "the key that opened this session ({}) is no longer in {loc}/keys (removed by \
                 another process?); refusing to remove key {} as well: run `cairn key list` \
                 and try again",
                current.short(),
                id.short()
            ),
        ));
    }
    // Two removals opened with different keys can each remove the other's key between their
    // checks and their deletes, leaving none. Keep this session's key file in hand, and put it
    // back if it vanished meanwhile: the repository then always keeps at least this key.
    let current_hex = current.to_hex();
    let current_bytes = repo
        .block_on(repo.backend().get(FileType::Key, &current_hex))
        .map_err(|e| Error::backend(format!("cannot read keys/{current_hex} in {loc}"), e))?;
    repo.block_on(repo.backend().delete(FileType::Key, &hex))
        .map_err(|e| Error::backend(format!("cannot delete keys/{hex} in {loc}"), e))?;
    if repo
        .block_on(repo.backend().exists(FileType::Key, &current_hex))
        .map_err(|e| Error::backend(format!("cannot check keys/{current_hex} in {loc}"), e))?
        .is_none()
    {
        repo.block_on(
            repo.backend()
                .put(FileType::Key, &current_hex, current_bytes),
        )
        .map_err(|e| {
            Error::backend(
                format!(
                    "key {} was removed by another process while key {} was being removed, and                      cannot be written back to {loc}/keys: add a key with `cairn key add` now",
                    current.short(),
                    id.short()
                ),
                e,
            )
        })?;
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "another process removed key {} (this session's) while key {} was being removed;                  key {} was written back so a key remains: run `cairn key list`",
                current.short(),
                id.short(),
                current.short()
            ),
        ));
    }
    Ok(())
}

/// Replaces the key that opened the repository with a new one for `new_password`: writes the
/// new key file (read back and opened, see [`add_key`]), then deletes the old one. No other
/// object is touched. After it returns, this handle's [`Repository::key_id`] names a deleted
/// key; the repository stays usable through the handle (the master key is unchanged).
pub fn change_password(
    repo: &Repository,
    new_password: &[u8],
    opts: &AddKeyOptions,
) -> Result<PasswordChange> {
    let old = *repo.key_id();
    let added = add_key(repo, new_password, opts)?;
    // Only now that the new key is stored and proven to open is the old one deleted: a crash
    // in between leaves two working keys.
    let (old_hex, new_hex) = (old.to_hex(), added.to_hex());
    repo.block_on(repo.backend().delete(FileType::Key, &old_hex))
        .map_err(|e| {
            Error::with_source(
                Error::backend_kind(&e),
                format!(
                    "the new key {new_hex} was written and opens with the new password, but the \
                     old key {old_hex} could not be deleted, so the old password still works: \
                     open the repository with the new password and run `cairn key remove {old_hex}`"
                ),
                e,
            )
        })?;
    Ok(PasswordChange {
        added,
        removed: old,
    })
}
