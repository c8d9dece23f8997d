//! A restored node's owner (when running as root), permissions and times.
//!
//! Files are set through the descriptor they were written through (`fchown`, `fchmod`,
//! `futimens`): no path walk, and nothing put at the path since can be changed instead.
//! Directories, symlinks and hard links are set by path. The owner goes first: `chown` clears
//! the set-user-ID and set-group-ID bits, which `chmod` then puts back.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;

use filetime::FileTime;
use repo_format::Node;

use crate::error::{Error, Result};

/// Whether this process may give files away (effective uid 0); asked once, not per file.
fn as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| crate::host::uid() == 0)
}

fn mtime(node: &Node) -> FileTime {
    FileTime::from_unix_time(node.mtime.sec, node.mtime.nsec)
}

fn owner_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("cannot set the owner of {}", path.display()), e)
}

fn mode_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(
        format!("cannot set the permissions of {}", path.display()),
        e,
    )
}

fn times_error(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("cannot set the times of {}", path.display()), e)
}

/// Sets the metadata of the file open as `file` (restored at `path`, named in errors).
pub(super) fn apply_file_metadata(file: &fs::File, path: &Path, node: &Node) -> Result<()> {
    if as_root() {
        std::os::unix::fs::fchown(file, Some(node.uid), Some(node.gid))
            .map_err(|e| owner_error(path, e))?;
    }
    // Always: the umask, a default ACL or the owner's change may have left other bits than
    // the file was created with (skipping it when `fstat` showed the right bits saved nothing
    // measurable on tmpfs or ext4).
    file.set_permissions(fs::Permissions::from_mode(node.mode))
        .map_err(|e| mode_error(path, e))?;
    let t = mtime(node);
    filetime::set_file_handle_times(file, Some(t), Some(t)).map_err(|e| times_error(path, e))
}

/// Sets the metadata of the node at `path`; a symlink's own (never its target's).
pub(super) fn apply_metadata(path: &Path, node: &Node, symlink: bool) -> Result<()> {
    if as_root() {
        let r = if symlink {
            std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
        } else {
            std::os::unix::fs::chown(path, Some(node.uid), Some(node.gid))
        };
        r.map_err(|e| owner_error(path, e))?;
    }
    let t = mtime(node);
    if symlink {
        return filetime::set_symlink_file_times(path, t, t).map_err(|e| times_error(path, e));
    }
    fs::set_permissions(path, fs::Permissions::from_mode(node.mode))
        .map_err(|e| mode_error(path, e))?;
    filetime::set_file_times(path, t, t).map_err(|e| times_error(path, e))
}
