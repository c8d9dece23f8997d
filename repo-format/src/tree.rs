//! Trees and content lists (SPEC §9): the two kinds of tree blob.
//!
//! ```text
//! tree:         kind u8 = 1 | version u8 = 1 | count u32 | nodes, strictly ascending by name bytes
//! node:         name u16 len + bytes | kind u8 | mode u32 | uid u32 | gid u32 | mtime i64 + u32
//!               | ctime i64 + u32 | inode u64 | device u64 | nlink u64 | size u64 | by kind:
//!                 file: form u8 (0 direct, 1 indirect) | count u32 | ids[32]
//!                 dir: subtree id[32]    symlink: u32 len + target    char/block device: rdev u64
//! content list: kind u8 = 2 | version u8 = 1 | count u32 (1..=8192) | data blob ids[32]
//! ```
//!
//! Encoding is canonical so that an unchanged directory gives the same tree id and is stored
//! once: [`Tree::encode`] sorts a copy by name, and [`Tree::decode`] rejects unsorted input.
//! [`ContentBuilder`] decides a file's content form with bounded memory.

use crate::crypto::RepoKeys;
use crate::error::FormatError;
use crate::format::{
    CONTENT_LIST_KIND, CONTENT_LIST_LEN, CONTENT_LIST_VERSION, DIRECT_CONTENT_MAX, MAX_NAME_LEN,
    MAX_SYMLINK_LEN, MIN_NODE_LEN, MODE_MASK, TREE_KIND, TREE_VERSION,
};
use crate::id::BlobId;
use crate::wire::{Put, Reader, len_u32};

const WHAT: &str = "tree";
const LIST_WHAT: &str = "content list";

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Seconds (negative before 1970).
    pub sec: i64,
    /// Nanoseconds, below 10^9.
    pub nsec: u32,
}

/// The data blobs of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// The data blob ids themselves (up to [`DIRECT_CONTENT_MAX`] for writers).
    Direct(Vec<BlobId>),
    /// Ids of content lists, each holding up to [`CONTENT_LIST_LEN`] data blob ids.
    Indirect(Vec<BlobId>),
}

/// What a node is, with what only that kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A regular file.
    File {
        /// Its data blobs.
        content: Content,
    },
    /// A directory.
    Dir {
        /// The id of its tree.
        subtree: BlobId,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, as bytes (at most 65 536).
        target: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice {
        /// Its device number.
        rdev: u64,
    },
    /// A block device.
    BlockDevice {
        /// Its device number.
        rdev: u64,
    },
    /// A Unix socket.
    Socket,
}

impl NodeKind {
    fn code(&self) -> u8 {
        match self {
            NodeKind::File { .. } => 1,
            NodeKind::Dir { .. } => 2,
            NodeKind::Symlink { .. } => 3,
            NodeKind::Fifo => 4,
            NodeKind::CharDevice { .. } => 5,
            NodeKind::BlockDevice { .. } => 6,
            NodeKind::Socket => 7,
        }
    }
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The name: 1..=65535 bytes, not `.` or `..`, no `/` or NUL; not necessarily UTF-8.
    pub name: Vec<u8>,
    /// Kind and kind-specific fields.
    pub kind: NodeKind,
    /// Permission bits, `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time.
    pub ctime: Timestamp,
    /// Inode number.
    pub inode: u64,
    /// Device of the file system holding the node.
    pub device: u64,
    /// Hard link count.
    pub nlink: u64,
    /// For files the content length; 0 for every other kind.
    pub size: u64,
}

/// Fails unless `name` is a valid node name.
pub fn check_name(name: &[u8]) -> Result<(), FormatError> {
    let bad = |why: &str| {
        Err(FormatError::corrupted(
            WHAT,
            format!("node name {:?} {why}", String::from_utf8_lossy(name)),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err(FormatError::bounds(WHAT, "name length", name.len()));
    }
    if name == b"." || name == b".." {
        return bad("is not allowed");
    }
    if name.contains(&b'/') || name.contains(&0) {
        return bad("contains '/' or NUL");
    }
    Ok(())
}

impl Node {
    fn check(&self) -> Result<(), FormatError> {
        check_name(&self.name)?;
        let name = || String::from_utf8_lossy(&self.name).into_owned();
        if self.mode & !MODE_MASK != 0 {
            return Err(FormatError::corrupted(
                WHAT,
                format!("{}: mode {:#o} has bits outside 0o7777", name(), self.mode),
            ));
        }
        for t in [self.mtime, self.ctime] {
            if t.nsec >= 1_000_000_000 {
                return Err(FormatError::bounds(WHAT, "nanoseconds", t.nsec));
            }
        }
        if !matches!(self.kind, NodeKind::File { .. }) && self.size != 0 {
            return Err(FormatError::corrupted(
                WHAT,
                format!("{}: size {} must be 0 for a non-file", name(), self.size),
            ));
        }
        if let NodeKind::Symlink { target } = &self.kind
            && target.len() > MAX_SYMLINK_LEN
        {
            return Err(FormatError::bounds(
                WHAT,
                "symlink target length",
                target.len(),
            ));
        }
        Ok(())
    }

    fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        self.check()?;
        out.put_u16(self.name.len() as u16); // check() bounded it by u16::MAX
        out.put_bytes(&self.name);
        out.put_u8(self.kind.code());
        out.put_u32(self.mode);
        out.put_u32(self.uid);
        out.put_u32(self.gid);
        for t in [self.mtime, self.ctime] {
            out.put_i64(t.sec);
            out.put_u32(t.nsec);
        }
        for v in [self.inode, self.device, self.nlink, self.size] {
            out.put_u64(v);
        }
        match &self.kind {
            NodeKind::File { content } => {
                let (form, ids) = match content {
                    Content::Direct(ids) => (0, ids),
                    Content::Indirect(ids) => (1, ids),
                };
                out.put_u8(form);
                out.put_u32(len_u32(WHAT, "content id count", ids.len())?);
                for id in ids {
                    out.put_bytes(&id.0.0);
                }
            }
            NodeKind::Dir { subtree } => out.put_bytes(&subtree.0.0),
            NodeKind::Symlink { target } => {
                out.put_u32(target.len() as u32); // check() bounded it by 65 536
                out.put_bytes(target);
            }
            NodeKind::CharDevice { rdev } | NodeKind::BlockDevice { rdev } => out.put_u64(*rdev),
            NodeKind::Fifo | NodeKind::Socket => {}
        }
        Ok(())
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Node, FormatError> {
        let name_len = r.u16()? as usize;
        let name = r.bytes(name_len)?.to_vec();
        let code = r.u8()?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let mtime = Timestamp {
            sec: r.i64()?,
            nsec: r.u32()?,
        };
        let ctime = Timestamp {
            sec: r.i64()?,
            nsec: r.u32()?,
        };
        let (inode, device, nlink, size) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let kind = match code {
            1 => {
                let form = r.u8()?;
                let n = r.count(32)?;
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(BlobId(r.id()?));
                }
                match form {
                    0 => NodeKind::File {
                        content: Content::Direct(ids),
                    },
                    1 => NodeKind::File {
                        content: Content::Indirect(ids),
                    },
                    _ => {
                        return Err(FormatError::corrupted(
                            WHAT,
                            format!("unknown content form {form}"),
                        ));
                    }
                }
            }
            2 => NodeKind::Dir {
                subtree: BlobId(r.id()?),
            },
            3 => {
                let len = r.u32()? as usize;
                if len > MAX_SYMLINK_LEN {
                    return Err(FormatError::bounds(WHAT, "symlink target length", len));
                }
                NodeKind::Symlink {
                    target: r.bytes(len)?.to_vec(),
                }
            }
            4 => NodeKind::Fifo,
            5 => NodeKind::CharDevice { rdev: r.u64()? },
            6 => NodeKind::BlockDevice { rdev: r.u64()? },
            7 => NodeKind::Socket,
            _ => {
                return Err(FormatError::corrupted(
                    WHAT,
                    format!("unknown node kind {code}"),
                ));
            }
        };
        let node = Node {
            name,
            kind,
            mode,
            uid,
            gid,
            mtime,
            ctime,
            inode,
            device,
            nlink,
            size,
        };
        node.check()?;
        Ok(node)
    }
}

/// A directory listing (SPEC §9).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tree {
    /// The entries; sorted by name bytes once decoded.
    pub nodes: Vec<Node>,
}

/// Reads the kind and version bytes shared by trees and content lists.
fn read_kind(r: &mut Reader<'_>, kind: u8, version: u8) -> Result<(), FormatError> {
    let k = r.u8()?;
    if k != kind {
        let found = match k {
            TREE_KIND => "a tree",
            CONTENT_LIST_KIND => "a content list",
            _ => "an unknown tree blob kind",
        };
        return Err(FormatError::corrupted(
            r.what(),
            format!("kind byte {k}: this is {found}"),
        ));
    }
    let v = r.u8()?;
    if v != version {
        return Err(FormatError::UnsupportedVersion {
            what: r.what(),
            version: v,
        });
    }
    Ok(())
}

impl Tree {
    /// The tree blob plaintext. Sorts a copy by name; fails on duplicate or invalid names and
    /// invalid fields.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let mut nodes: Vec<&Node> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = nodes.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(FormatError::corrupted(
                WHAT,
                format!("two nodes named {:?}", String::from_utf8_lossy(&w[0].name)),
            ));
        }
        let mut out = Vec::with_capacity(6 + nodes.len() * (MIN_NODE_LEN + 32));
        out.put_u8(TREE_KIND);
        out.put_u8(TREE_VERSION);
        out.put_u32(len_u32(WHAT, "node count", nodes.len())?);
        for n in nodes {
            n.encode_into(&mut out)?;
        }
        Ok(out)
    }

    /// Parses a tree blob plaintext; rejects unsorted or duplicate names.
    pub fn decode(b: &[u8]) -> Result<Tree, FormatError> {
        let mut r = Reader::new(b, WHAT);
        read_kind(&mut r, TREE_KIND, TREE_VERSION)?;
        let n = r.count(MIN_NODE_LEN)?;
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
            let node = Node::decode_from(&mut r)?;
            if let Some(prev) = nodes.last()
                && prev.name >= node.name
            {
                return Err(FormatError::corrupted(
                    WHAT,
                    format!(
                        "node {:?} is out of order or duplicated",
                        String::from_utf8_lossy(&node.name)
                    ),
                ));
            }
            nodes.push(node);
        }
        r.finish()?;
        Ok(Tree { nodes })
    }

    /// The node called `name` (binary search: nodes of a decoded tree are sorted).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        match self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)) {
            Ok(i) => Some(&self.nodes[i]),
            // A tree built in memory may not be sorted yet.
            Err(_) => self.nodes.iter().find(|n| n.name == name),
        }
    }
}

/// The data blob ids of one part of a large file, in order (SPEC §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentList {
    /// 1..=8192 data blob ids.
    pub ids: Vec<BlobId>,
}

impl ContentList {
    /// The tree blob plaintext.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        if !(1..=CONTENT_LIST_LEN).contains(&self.ids.len()) {
            return Err(FormatError::bounds(LIST_WHAT, "count", self.ids.len()));
        }
        let mut out = Vec::with_capacity(6 + 32 * self.ids.len());
        out.put_u8(CONTENT_LIST_KIND);
        out.put_u8(CONTENT_LIST_VERSION);
        out.put_u32(self.ids.len() as u32); // at most 8192, checked above
        for id in &self.ids {
            out.put_bytes(&id.0.0);
        }
        Ok(out)
    }

    /// Parses a content list plaintext.
    pub fn decode(b: &[u8]) -> Result<ContentList, FormatError> {
        let mut r = Reader::new(b, LIST_WHAT);
        read_kind(&mut r, CONTENT_LIST_KIND, CONTENT_LIST_VERSION)?;
        let n = r.count(32)?;
        if !(1..=CONTENT_LIST_LEN).contains(&n) {
            return Err(FormatError::bounds(LIST_WHAT, "count", n));
        }
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(BlobId(r.id()?));
        }
        r.finish()?;
        Ok(ContentList { ids })
    }
}

/// A content list ready to store as a tree blob: its id and plaintext.
pub type ListBlob = (BlobId, Vec<u8>);

/// Builds a file's [`Content`] incrementally with bounded memory (at most [`CONTENT_LIST_LEN`]
/// pending ids).
///
/// Rule (SPEC §9): at most [`DIRECT_CONTENT_MAX`] ids give [`Content::Direct`]; more give
/// [`Content::Indirect`] with content lists of exactly [`CONTENT_LIST_LEN`] ids each, in order,
/// the last one possibly shorter. The same ids always give the same content and lists.
#[derive(Debug, Default)]
pub struct ContentBuilder {
    pending: Vec<BlobId>,
    lists: Vec<BlobId>,
}

impl ContentBuilder {
    /// No ids yet.
    pub fn new() -> Self {
        ContentBuilder::default()
    }

    fn flush(&mut self, keys: &RepoKeys) -> Result<ListBlob, FormatError> {
        let plain = ContentList {
            ids: std::mem::take(&mut self.pending),
        }
        .encode()?;
        let id = keys.blob_id(&plain);
        self.lists.push(id);
        Ok((id, plain))
    }

    /// Pushes the next data blob id. When a content list fills, returns it (id and plaintext)
    /// for the caller to store as a tree blob.
    pub fn push(&mut self, keys: &RepoKeys, id: BlobId) -> Result<Option<ListBlob>, FormatError> {
        self.pending.push(id);
        if self.pending.len() == CONTENT_LIST_LEN {
            Ok(Some(self.flush(keys)?))
        } else {
            Ok(None)
        }
    }

    /// The node's content, and possibly a last (partial) content list to store.
    pub fn finish(mut self, keys: &RepoKeys) -> Result<(Content, Option<ListBlob>), FormatError> {
        if self.lists.is_empty() && self.pending.len() <= DIRECT_CONTENT_MAX {
            return Ok((Content::Direct(self.pending), None));
        }
        let last = if self.pending.is_empty() {
            None
        } else {
            Some(self.flush(keys)?)
        };
        Ok((Content::Indirect(self.lists), last))
    }
}

#[cfg(test)]
mod tests;
