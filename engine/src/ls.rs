//! Listing a snapshot's contents: a depth-first walk that yields each node with its path.

use repo_format::{BlobId, Node, NodeKind};

use crate::error::Result;
use crate::repository::Repository;

/// Calls `f(path, node)` for every node below `tree`, parents before children, in name order.
/// Paths are `/`-separated and relative to the snapshot root (as `restore --include` takes them).
pub fn walk(
    repo: &Repository,
    tree: &BlobId,
    f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    let mut path = Vec::new();
    walk_inner(repo, tree, &mut path, f)
}

fn walk_inner(
    repo: &Repository,
    tree: &BlobId,
    path: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8], &Node) -> Result<()>,
) -> Result<()> {
    let tree = repo.load_tree(tree)?;
    for node in &tree.nodes {
        let len = path.len();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&node.name);
        f(path, node)?;
        if let NodeKind::Dir { subtree } = &node.kind {
            walk_inner(repo, subtree, path, f)?;
        }
        path.truncate(len);
    }
    Ok(())
}
