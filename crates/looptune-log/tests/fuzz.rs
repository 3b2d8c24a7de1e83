//! Fuzzing the readers: arbitrary bytes into the tuning-log parser and the deploy-database
//! decoder must give records, warnings or a typed error, never a panic. Proptest instead of
//! `cargo fuzz` so that it runs with the workspace's tests: 10,000 cases per run, each a few
//! hundred bytes, from a seed that changes every run (proptest prints the failing input, and
//! `PROPTEST_CASES` changes the count).

#![forbid(unsafe_code)]

use looptune_log::{parse_any, parse_log, DeployDb, DB_MAGIC, DB_VERSION};
use proptest::prelude::*;
use std::path::Path;

/// Bytes that look a little like the real thing more often than uniform bytes would: a JSON
/// object's start, a database header, or nothing special, followed by arbitrary bytes.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mut header = DB_MAGIC.to_vec();
    header.extend_from_slice(&DB_VERSION.to_le_bytes());
    let prefix = prop_oneof![
        Just(Vec::new()),
        Just(b"{\"version\":".to_vec()),
        Just(DB_MAGIC.to_vec()),
        Just(header),
        Just(b"{\"version\":3,\"workload\":\"matmul:m=1,n=1,k=1\"}\n".to_vec()),
    ];
    (prefix, proptest::collection::vec(any::<u8>(), 0..400)).prop_map(|(mut prefix, tail)| {
        prefix.extend(tail);
        prefix
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes_never_panic_a_reader(bytes in hostile_bytes()) {
        let path = Path::new("fuzz.bin");
        let _ = parse_log(&bytes, path);
        let _ = parse_any(&bytes, path);
        if let Err(error) = DeployDb::from_bytes(&bytes, path) {
            prop_assert!(error.to_string().contains("fuzz.bin"));
        }
    }
}
