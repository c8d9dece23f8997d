//! Writing restored data so that runs of zeros stay holes.
//!
//! Restore creates each file empty and gives it its length (large files first, small files
//! when their last piece ends in a hole), so every byte not written reads as zero and takes
//! no space. Skipping all-zero blobs alone is not enough: a blob that holds a
//! little data amid zeros (the chunker cuts a sparse disk image into 8 MiB pieces) would write
//! its zeros out. So each blob is looked at in file-system blocks, aligned to the file's
//! offsets, and only the blocks holding data are written, neighbours in one call.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The hole granularity: ext4, xfs and btrfs allocate 4 KiB blocks, tmpfs 4 KiB pages.
const BLOCK: u64 = 4096;

/// Writes `data` at `offset` of a file this restore created (its unwritten bytes read as zeros),
/// leaving out every aligned block of `data` that is all zeros. Returns whether the last byte
/// of `data` was written (if not, a file that ends there must be given its length).
pub(super) fn write_sparse(file: &File, data: &[u8], offset: u64) -> io::Result<bool> {
    let mut run: Option<usize> = None;
    let mut pos = 0usize;
    while pos < data.len() {
        // Block boundaries are those of the file, not of the blob.
        let to_boundary = (BLOCK - (offset + pos as u64) % BLOCK) as usize;
        let end = (pos + to_boundary).min(data.len());
        let zero = data[pos..end].iter().all(|&b| b == 0);
        match (zero, run) {
            (true, Some(start)) => {
                file.write_all_at(&data[start..pos], offset + start as u64)?;
                run = None;
            }
            (false, None) => run = Some(pos),
            _ => {}
        }
        pos = end;
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], offset + start as u64)?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn only_blocks_with_data_are_written_and_the_content_is_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let size = 64u64 << 20;
        file.set_len(size).expect("set_len");
        // A blob of 16 MiB starting off a block boundary, data at both ends and in the middle.
        let offset = (8 << 20) + 100;
        let mut blob = vec![0u8; 16 << 20];
        blob[0] = 1;
        blob[5 << 20..(5 << 20) + 10_000].fill(7);
        let last = blob.len() - 1;
        blob[last] = 9;
        assert!(
            write_sparse(&file, &blob, offset).expect("write"),
            "the last byte is data: written"
        );
        let mut tail = vec![0u8; 10_000];
        tail[0] = 3;
        assert!(
            !write_sparse(&file, &tail, 40 << 20).expect("write"),
            "the last bytes are a hole: not written"
        );
        tail[0] = 0;
        drop(file);
        let back = std::fs::read(&path).expect("read");
        let mut expected = vec![0u8; size as usize];
        expected[offset as usize..offset as usize + blob.len()].copy_from_slice(&blob);
        expected[40 << 20] = 3;
        assert!(back == expected, "content differs");
        let allocated = std::fs::metadata(&path).expect("stat").blocks() * 512;
        assert!(
            allocated <= 64 << 10,
            "{allocated} bytes allocated for ~10 KB of data"
        );
    }

    #[test]
    fn dense_data_is_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8 + 1).collect();
        file.set_len(blob.len() as u64 + 3).expect("set_len");
        assert!(write_sparse(&file, &blob, 3).expect("write"));
        let back = std::fs::read(&path).expect("read");
        assert_eq!(&back[3..], &blob[..]);
        assert_eq!(&back[..3], &[0, 0, 0]);
    }
}
