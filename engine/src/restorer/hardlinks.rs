//! Hard links: names that were one file on disk are restored as one file again.
//!
//! Each node records the `device`, `inode` and `nlink` its file had when it was backed up
//! (SPEC §9). Within one restore, file nodes with `nlink > 1` and the same (`device`, `inode`)
//! are names of one file:
//!
//! ```text
//! after the walk:   the first such node (in walk order) stays a file job; each later one
//!                   becomes a link to it (split_links)
//! file jobs:        written as usual, in parallel
//! after all jobs:   each link: remove what is at its path, hard_link(first, path) (create_links)
//! then:             directories' metadata (a new link changes its directory's mtime)
//! ```
//!
//! Links are made only once every file job has finished, so a link never points at a file whose
//! content is still being written, whichever thread wrote it.
//!
//! Only the names restored together are linked: with `--include`, the first name included is
//! the one written. A later node whose content or metadata differs from the first one's (the
//! file changed between the two reads, or the inode was reused) is restored as its own copy,
//! since a link would lose one of the two versions. When the first could not be restored, its
//! links fail too, each saying why; when the target refuses a link (a file system without hard
//! links, too many links), the name is restored as a copy of the first instead.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use repo_format::Node;

use super::{FileJob, apply_metadata, error_chain};
use crate::error::Error;
use crate::progress::Progress;

/// A name to restore as a hard link to a file restored by a file job.
pub(super) struct Link {
    /// Where the link goes.
    path: PathBuf,
    /// The file it links to (the first name of the same inode in this restore).
    first: PathBuf,
    /// The link's node, for the metadata of a copy when linking is refused.
    node: Node,
}

/// What [`create_links`] did.
#[derive(Default)]
pub(super) struct LinkOutcome {
    /// Names restored (as links or, where linking was refused, as copies).
    pub files: u64,
    /// Names that could not be restored, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Takes out of `files` every job that names the same file as an earlier job, and returns them
/// as links to that job's path.
pub(super) fn split_links(files: &mut Vec<FileJob>) -> Vec<Link> {
    if !files.iter().any(|j| j.node.nlink > 1) {
        return Vec::new();
    }
    // (device, inode) -> index in `kept` of the first job naming it.
    let mut firsts: HashMap<(u64, u64), usize> = HashMap::new();
    let mut kept: Vec<FileJob> = Vec::with_capacity(files.len());
    let mut links = Vec::new();
    for job in files.drain(..) {
        if job.node.nlink > 1 && job.node.inode != 0 {
            let key = (job.node.device, job.node.inode);
            match firsts.get(&key) {
                Some(&i) if same_file(&kept[i].node, &job.node) => {
                    links.push(Link {
                        path: job.path,
                        first: kept[i].path.clone(),
                        node: job.node,
                    });
                    continue;
                }
                Some(_) => {}
                None => {
                    firsts.insert(key, kept.len());
                }
            }
        }
        kept.push(job);
    }
    *files = kept;
    links
}

/// Whether two nodes of one (device, inode) describe the same content and metadata, so that
/// one file with two names restores both exactly. `ctime` and `nlink` are left out: adding a
/// link changes them, and neither is restored.
fn same_file(a: &Node, b: &Node) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime == b.mtime
}

/// Creates every link, after all file jobs are done. `failed` holds the file jobs' failures:
/// a link to a file that failed is not made.
pub(super) fn create_links(
    links: &[Link],
    failed: &[&[(PathBuf, String)]],
    progress: &dyn Progress,
) -> LinkOutcome {
    let mut out = LinkOutcome::default();
    if links.is_empty() {
        return out;
    }
    let failed: HashSet<&Path> = failed
        .iter()
        .flat_map(|f| f.iter().map(|(p, _)| p.as_path()))
        .collect();
    for link in links {
        let made = if failed.contains(link.first.as_path()) {
            Err(format!(
                "not restored: it is a hard link of {}, which could not be restored",
                link.first.display()
            ))
        } else {
            make_link(link)
        };
        match made {
            Ok(()) => out.files += 1,
            Err(msg) => {
                progress.warning(&link.path, &msg);
                out.failed.push((link.path.clone(), msg));
            }
        }
    }
    out
}

/// Links `link.path` to `link.first`, replacing what is there; where the target refuses the
/// link, copies the file instead.
fn make_link(link: &Link) -> Result<(), String> {
    // A file left by an earlier restore is replaced; writing through it could change a file
    // it is itself linked to.
    match fs::remove_file(&link.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot replace {} with a hard link: {e}",
                link.path.display()
            ));
        }
    }
    let Err(link_err) = fs::hard_link(&link.first, &link.path) else {
        return Ok(());
    };
    let copied = fs::copy(&link.first, &link.path)
        .map_err(|e| Error::io(format!("cannot copy {}", link.first.display()), e))
        .and_then(|_| apply_metadata(&link.path, &link.node, false));
    match copied {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&link.path);
            Err(format!(
                "cannot link it to {} ({link_err}), nor copy it: {}",
                link.first.display(),
                error_chain(&e)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repo_format::{BlobId, Content, Id, NodeKind, Timestamp};

    fn job(path: &str, inode: u64, nlink: u64, blob: u8) -> FileJob {
        FileJob {
            path: PathBuf::from(path),
            node: Node {
                name: path.as_bytes().to_vec(),
                kind: NodeKind::File {
                    content: Content::Direct(vec![BlobId(Id([blob; 32]))]),
                },
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: Timestamp { sec: 1, nsec: 0 },
                ctime: Timestamp { sec: 1, nsec: 0 },
                inode,
                device: 7,
                nlink,
                size: 10,
            },
        }
    }

    fn paths(files: &[FileJob]) -> Vec<&str> {
        files.iter().filter_map(|j| j.path.to_str()).collect()
    }

    #[test]
    fn later_names_of_one_inode_become_links_to_the_first() {
        let mut files = vec![
            job("a", 5, 3, 1),
            job("b", 6, 1, 1),
            job("c", 5, 3, 1),
            job("d", 5, 3, 1),
            job("e", 6, 1, 1),
        ];
        let links = split_links(&mut files);
        assert_eq!(paths(&files), ["a", "b", "e"]);
        let made: Vec<(&Path, &Path)> = links
            .iter()
            .map(|l| (l.path.as_path(), l.first.as_path()))
            .collect();
        assert_eq!(
            made,
            [
                (Path::new("c"), Path::new("a")),
                (Path::new("d"), Path::new("a"))
            ]
        );
    }

    #[test]
    fn a_name_whose_content_or_metadata_differs_is_restored_as_a_copy() {
        let mut other_mode = job("c", 5, 2, 1);
        other_mode.node.mode = 0o600;
        let mut files = vec![job("a", 5, 2, 1), job("b", 5, 2, 2), other_mode];
        assert!(split_links(&mut files).is_empty());
        assert_eq!(files.len(), 3);
    }

    #[test]
    fn the_same_inode_on_another_device_is_another_file() {
        let mut other = job("b", 5, 2, 1);
        other.node.device = 8;
        let mut files = vec![job("a", 5, 2, 1), other];
        assert!(split_links(&mut files).is_empty());
    }
}
