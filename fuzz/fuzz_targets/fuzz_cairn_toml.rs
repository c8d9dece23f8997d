//! cairn.toml (`engine::stores::parse`): any text gives a `Config` or a list of problems, never
//! a panic; every problem renders (its line is computed from a span into the text), and a
//! parsed config is deterministic (parsing the same text again gives the same value).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// A fixed environment for `${VAR}`: some variables set (one empty, one with `$` and quotes),
/// the rest unset, so both the value and the default branches run.
fn env(name: &str) -> Option<String> {
    match name {
        "HOME" => Some("/home/cairn".to_owned()),
        "PGHOST" => Some("db.internal".to_owned()),
        "EMPTY" => Some(String::new()),
        "ODD" => Some("a $b \"c\" ${d}".to_owned()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 is refused before parsing by `stores::load`; the lossy text still reaches
    // the parser's odd corners (U+FFFD in keys, strings and comments).
    let text = String::from_utf8_lossy(data);
    let file = Path::new("/etc/cairn/cairn.toml");
    match engine::stores::parse(&text, file, &env) {
        Ok(config) => {
            let _ = config.restore_order();
            for store in &config.stores {
                let _ = store.chunker_profile();
                let _ = store.file_name();
                let _ = store.kind.type_name();
            }
            let again =
                engine::stores::parse(&text, file, &env).expect("the same text parses again");
            assert_eq!(again, config);
        }
        Err(errors) => {
            assert!(!errors.errors().is_empty(), "an error without a problem");
            let shown = errors.to_string();
            assert!(!shown.is_empty());
            for e in errors.errors() {
                let _ = e.to_string();
            }
        }
    }
});
