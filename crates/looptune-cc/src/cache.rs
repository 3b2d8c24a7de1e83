//! Compiled objects cached by content, so a resumed run or a re-measure never recompiles.
//!
//! An entry is two files named by a hash of its key: `HASH.c`, the exact text compiled (the
//! printed kernel preceded by a comment naming the compiler, its version and its flags, so the
//! key is the file), and `HASH.so`, the object. A lookup is a hit only when `HASH.c` holds
//! exactly the expected text (a hash collision or a half-written entry is a miss) and the
//! object exists; a damaged object that fails to load is compiled again by the caller. Entries
//! are written to temporary names and renamed into place, so concurrent writers (the parallel
//! compile of a batch, a worker process) never see a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of the object cache: `LOOPTUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/looptune/c`,
/// else `$HOME/.cache/looptune/c`, else a directory under the system's temporary directory.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOOPTUNE_CACHE_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("looptune").join("c");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        return PathBuf::from(home)
            .join(".cache")
            .join("looptune")
            .join("c");
    }
    std::env::temp_dir().join("looptune-cache").join("c")
}

/// A cache directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectCache {
    dir: PathBuf,
}

/// Where one key's files are.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The C file: the key itself.
    pub source: PathBuf,
    /// The shared object.
    pub object: PathBuf,
}

impl ObjectCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> ObjectCache {
        ObjectCache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of `key` (the full text compiled).
    pub fn entry(&self, key: &str) -> Entry {
        let name = format!(
            "{:016x}{:016x}",
            fnv1a(key, FNV_OFFSET),
            fnv1a(key, FNV_OFFSET_2)
        );
        Entry {
            source: self.dir.join(format!("{name}.c")),
            object: self.dir.join(format!("{name}.so")),
        }
    }

    /// The object of `key` when the cache holds it: its source file holds exactly `key` and the
    /// object file exists.
    pub fn lookup(&self, key: &str) -> Option<Entry> {
        let entry = self.entry(key);
        let stored = std::fs::read_to_string(&entry.source).ok()?;
        (stored == key && entry.object.is_file()).then_some(entry)
    }

    /// Writes `key` as the entry's source, for the compiler to read; returns the entry and the
    /// temporary path the object must be compiled to before [`ObjectCache::publish`].
    pub fn stage(&self, key: &str) -> std::io::Result<(Entry, PathBuf, PathBuf)> {
        std::fs::create_dir_all(&self.dir)?;
        let entry = self.entry(key);
        let unique = unique_suffix();
        let staged_source = entry.source.with_extension(format!("c.{unique}.tmp.c"));
        let staged_object = entry.object.with_extension(format!("so.{unique}.tmp"));
        let mut file = std::fs::File::create(&staged_source)?;
        file.write_all(key.as_bytes())?;
        file.sync_data()?;
        Ok((entry, staged_source, staged_object))
    }

    /// Moves a staged source and its compiled object into place (object first, so that a
    /// source file in place always has its object).
    pub fn publish(
        &self,
        entry: &Entry,
        staged_source: &Path,
        staged_object: &Path,
    ) -> std::io::Result<()> {
        std::fs::rename(staged_object, &entry.object)?;
        std::fs::rename(staged_source, &entry.source)
    }

    /// Removes an entry (a damaged object), ignoring files already gone.
    pub fn evict(&self, entry: &Entry) {
        let _ = std::fs::remove_file(&entry.source);
        let _ = std::fs::remove_file(&entry.object);
    }
}

/// Removes staged files after a failed compile.
pub fn discard(paths: &[&Path]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// A second offset basis, so that the 128-bit name is two independent 64-bit hashes.
const FNV_OFFSET_2: u64 = 0x6c62_272e_07bb_0142;

/// FNV-1a over `text` from `offset`: stable across Rust versions and processes, unlike the
/// standard library's hasher.
fn fnv1a(text: &str, offset: u64) -> u64 {
    text.bytes().fold(offset, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A suffix no other staging in this or another process uses at the same time.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_hits_only_the_exact_text() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ObjectCache::new(dir.path());
        let key = "/* gcc -O2 */\nvoid f(void) {}\n";
        assert!(cache.lookup(key).is_none());
        let (entry, source, object) = cache.stage(key).expect("stage");
        std::fs::write(&object, b"not really an object").expect("write");
        cache.publish(&entry, &source, &object).expect("publish");
        assert!(cache.lookup(key).is_some());
        assert!(cache.lookup("/* gcc -O3 */\nvoid f(void) {}\n").is_none());
        // A source file whose text differs (a collision, a torn write) is a miss.
        std::fs::write(&entry.source, "something else").expect("write");
        assert!(cache.lookup(key).is_none());
    }

    #[test]
    fn names_are_stable() {
        let cache = ObjectCache::new("/x");
        let entry = cache.entry("abc");
        assert_eq!(
            entry.object,
            PathBuf::from("/x/e71fa2190541574b8b7ebb2d468f71e6.so"),
            "the hash of a key must never change between versions"
        );
    }
}
