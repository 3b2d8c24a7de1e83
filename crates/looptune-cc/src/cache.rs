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
/// else `$HOME/.cache/looptune/c`, else a directory of this user's under the system's temporary
/// directory. Whichever it is, objects are only loaded from it while it is private to this user.
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
    std::env::temp_dir()
        .join(format!("looptune-cache-{}", user_tag()))
        .join("c")
}

/// A tag naming this process's user in a shared directory: the owner of `/proc/self`.
fn user_tag() -> String {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(me) = std::fs::metadata("/proc/self") {
            return me.uid().to_string();
        }
    }
    "user".to_string()
}

/// Refuses a cache directory another user could have put objects in: one owned by someone else
/// or writable by the group or others. Loading an object runs its code, so the directory must
/// be as private as the process.
fn check_private(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(dir)?;
        if metadata.mode() & 0o022 != 0 {
            return Err(std::io::Error::other(format!(
                "the object cache `{}` is writable by other users (mode {:o}); objects in it \
                 could be anyone's code",
                dir.display(),
                metadata.mode() & 0o777
            )));
        }
        if let Ok(me) = std::fs::metadata("/proc/self") {
            if me.uid() != metadata.uid() {
                return Err(std::io::Error::other(format!(
                    "the object cache `{}` belongs to user {}, not to this process's user {}",
                    dir.display(),
                    metadata.uid(),
                    me.uid()
                )));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates `dir` (and its parents) readable and writable by this user only.
fn create_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
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

    /// The object of `key` when the cache holds it: the directory is private to this user, its
    /// source file holds exactly `key` and the object file exists.
    pub fn lookup(&self, key: &str) -> Option<Entry> {
        check_private(&self.dir).ok()?;
        let entry = self.entry(key);
        let stored = std::fs::read_to_string(&entry.source).ok()?;
        (stored == key && entry.object.is_file()).then_some(entry)
    }

    /// Writes `key` as the entry's source, for the compiler to read; returns the entry and the
    /// temporary path the object must be compiled to before [`ObjectCache::publish`].
    pub fn stage(&self, key: &str) -> std::io::Result<(Entry, PathBuf, PathBuf)> {
        create_private(&self.dir)?;
        check_private(&self.dir)?;
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
    #[cfg(unix)]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = ObjectCache::new(dir.path().join("c"));
        let key = "/* k */\n";
        let (entry, source, object) = cache.stage(key).expect("stage");
        std::fs::write(&object, b"x").expect("write");
        cache.publish(&entry, &source, &object).expect("publish");
        assert!(cache.lookup(key).is_some());
        std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        assert!(
            cache.lookup(key).is_none(),
            "a world-writable cache was trusted"
        );
        let error = cache.stage(key).expect_err("staging into it is refused");
        assert!(
            error.to_string().contains("writable by other users"),
            "{error}"
        );
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
