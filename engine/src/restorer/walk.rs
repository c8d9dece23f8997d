//! The restore's walk of the snapshot tree: directories are made and symlinks created as it
//! goes, file jobs are collected for the writers.
//!
//! ```text
//! load the tree (one ranged read)
//! in name order: mkdir each subdirectory, create each symlink, collect each file's job
//! the subdirectories' trees in parallel (rayon), each walked the same way
//! merge the results in name order: files in the snapshot's order, directories children first
//! ```
//!
//! A directory is made before anything in it, and a directory's contents are walked only after
//! it exists; the results do not depend on the schedule. A subtree that cannot be read
//! (damaged, missing) fails what is below it, not the whole restore; storage failures stop it.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use repo_format::{BlobId, Node, NodeKind};

use super::{FileJob, RestoreSummary, apply_metadata, cannot_create, create_dir, error_chain};
use crate::error::{Error, ErrorKind, Result};
use crate::repository::Repository;

/// Include paths as lists of name components (a leading `/` is ignored).
pub(super) fn parse_includes(includes: &[PathBuf]) -> Result<Vec<Vec<Vec<u8>>>> {
    includes
        .iter()
        .map(|p| {
            let comps: Vec<Vec<u8>> = p
                .as_os_str()
                .as_bytes()
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .map(<[u8]>::to_vec)
                .collect();
            if comps.is_empty() || comps.iter().any(|c| c == b"..") {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "--include {}: give a path inside the snapshot, as `cairn ls` shows it",
                        p.display()
                    ),
                ));
            }
            Ok(comps)
        })
        .collect()
}

/// How a node at `rel` relates to the include list.
#[derive(PartialEq)]
enum Selected {
    All,
    Partly,
    No,
}

fn selected(rel: &[Vec<u8>], includes: &[Vec<Vec<u8>>]) -> Selected {
    if includes.is_empty() {
        return Selected::All;
    }
    let mut partly = false;
    for inc in includes {
        if rel.len() >= inc.len() && rel[..inc.len()] == inc[..] {
            return Selected::All;
        }
        if inc.len() > rel.len() && inc[..rel.len()] == rel[..] {
            partly = true;
        }
    }
    if partly {
        Selected::Partly
    } else {
        Selected::No
    }
}

/// What walking a tree made and found.
#[derive(Default)]
pub(super) struct Walked {
    /// Files to write, in the snapshot's order.
    pub(super) files: Vec<FileJob>,
    /// Directories made, children before their parent (their metadata is set last).
    pub(super) dirs: Vec<(PathBuf, Node)>,
    /// Directories and symlinks made, failures and warnings.
    pub(super) summary: RestoreSummary,
}

impl Walked {
    fn append(&mut self, other: Walked) {
        self.files.extend(other.files);
        self.dirs.extend(other.dirs);
        let (s, o) = (&mut self.summary, other.summary);
        s.dirs += o.dirs;
        s.symlinks += o.symlinks;
        s.failed.extend(o.failed);
        s.warnings.extend(o.warnings);
    }
}

/// A run of a tree's entries: made already (files, symlinks, special files), or a
/// subdirectory, made, whose contents are still to walk.
enum Part {
    Made(Walked),
    Subdir {
        path: PathBuf,
        node: Node,
        subtree: BlobId,
        rel: Vec<Vec<u8>>,
    },
}

/// Walks the tree `tree_id` restored at `dir` (`rel`: its path in the snapshot, as names).
pub(super) fn walk_tree(
    repo: &Repository,
    tree_id: &BlobId,
    dir: &Path,
    rel: &[Vec<u8>],
    includes: &[Vec<Vec<u8>>],
) -> Result<Walked> {
    let tree = repo.load_tree(tree_id).map_err(|e| match e.kind() {
        // Reported as this directory's failure by the caller.
        ErrorKind::Corrupt | ErrorKind::NotFound => e,
        // Stops the restore: say where it was.
        kind => Error::with_source(
            kind,
            format!("cannot read what to restore into {}", dir.display()),
            e,
        ),
    })?;
    let mut parts: Vec<Part> = Vec::new();
    let mut rel = rel.to_vec();
    for node in tree.nodes {
        rel.push(node.name.clone());
        let sel = selected(&rel, includes);
        let path = dir.join(OsStr::from_bytes(&node.name));
        match (&node.kind, sel) {
            (_, Selected::No) => {}
            (NodeKind::Dir { subtree }, _) => {
                create_dir(&path, node.mode).map_err(|e| cannot_create("directory", &path, e))?;
                let subtree = *subtree;
                parts.push(Part::Subdir {
                    path,
                    node,
                    subtree,
                    rel: rel.clone(),
                });
            }
            (_, Selected::Partly) => {}
            _ => match parts.last_mut() {
                Some(Part::Made(made)) => add_leaf(made, path, node),
                _ => {
                    let mut made = Walked::default();
                    add_leaf(&mut made, path, node);
                    parts.push(Part::Made(made));
                }
            },
        }
        rel.pop();
    }
    let walked = parts
        .into_par_iter()
        .map(|part| match part {
            Part::Made(made) => Ok(made),
            Part::Subdir {
                path,
                node,
                subtree,
                rel,
            } => {
                let mut sub = match walk_tree(repo, &subtree, &path, &rel, includes) {
                    Ok(sub) => sub,
                    Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                        let msg =
                            format!("directory contents cannot be restored: {}", error_chain(&e));
                        let mut sub = Walked::default();
                        sub.summary.failed.push((path.clone(), msg));
                        sub
                    }
                    Err(e) => return Err(e),
                };
                sub.summary.dirs += 1;
                sub.dirs.push((path, node));
                Ok(sub)
            }
        })
        .collect::<Result<Vec<Walked>>>()?;
    let mut out = Walked::default();
    for w in walked {
        out.append(w);
    }
    Ok(out)
}

/// A file's job, a symlink made, or a special file's warning.
fn add_leaf(made: &mut Walked, path: PathBuf, node: Node) {
    match &node.kind {
        NodeKind::File { .. } => made.files.push(FileJob { path, node }),
        NodeKind::Symlink { target } => {
            let _ = fs::remove_file(&path);
            let result = std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)
                .map_err(|e| Error::io(format!("cannot create symlink {}", path.display()), e))
                .and_then(|()| apply_metadata(&path, &node, true));
            match result {
                Ok(()) => made.summary.symlinks += 1,
                Err(e) => made.summary.failed.push((path, error_chain(&e))),
            }
        }
        _ => made.summary.warnings.push((
            path,
            "special file (fifo, socket or device) not restored".to_string(),
        )),
    }
}
