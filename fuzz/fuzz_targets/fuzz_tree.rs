//! Trees: never a panic; only canonical trees decode, so re-encoding gives the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repo_format::Tree;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        let bytes = tree.encode().expect("a decoded tree re-encodes");
        assert_eq!(bytes, data, "decoded tree was not canonical");
        for n in &tree.nodes {
            assert!(std::ptr::eq(tree.find(&n.name).expect("find"), n));
        }
    }
});
