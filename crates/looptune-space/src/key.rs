//! The one key of a task in tuning logs, queries, the dispatcher and the deploy database, for
//! built-in operators and users' operators alike.
//!
//! A built-in workload's key is its canonical text (`matmul:m=512,n=512,k=512,transpose_b=false`,
//! every parameter spelled out); a user's [`CustomTask`](crate::CustomTask) is
//! `custom:NAME`, which no workload's text can be. A typed key rather than a string, so that a
//! query cannot be handed some other text, and one key rather than a `&Workload` in some places
//! and a string in others, so that a custom operator is logged, queried and deployed like a
//! matmul.

use looptune_ir::Workload;
use std::fmt;

/// A task's key (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskKey(String);

impl TaskKey {
    /// The key of a built-in workload.
    pub fn of_workload(workload: &Workload) -> TaskKey {
        TaskKey(workload.to_string())
    }

    /// The key of a user's operator named `name` (checked by `CustomTask`).
    pub(crate) fn custom(name: &str) -> TaskKey {
        TaskKey(format!("{}{name}", crate::CUSTOM_KEY_PREFIX))
    }

    /// The key as a tuning-log record writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a user's operator (`custom:NAME`).
    pub fn is_custom(&self) -> bool {
        self.0.starts_with(crate::CUSTOM_KEY_PREFIX)
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Workload> for TaskKey {
    fn from(workload: &Workload) -> TaskKey {
        TaskKey::of_workload(workload)
    }
}

impl From<Workload> for TaskKey {
    fn from(workload: Workload) -> TaskKey {
        TaskKey::of_workload(&workload)
    }
}

impl From<&TaskKey> for TaskKey {
    fn from(key: &TaskKey) -> TaskKey {
        key.clone()
    }
}

impl PartialEq<str> for TaskKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TaskKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_key_is_its_text_and_never_a_custom_key() {
        let workload: Workload = "matmul:m=2,n=3,k=4".parse().expect("valid");
        let key = TaskKey::from(&workload);
        assert_eq!(key, "matmul:m=2,n=3,k=4,transpose_b=false");
        assert!(!key.is_custom());
        let custom = TaskKey::custom("relu_product");
        assert_eq!(custom.as_str(), "custom:relu_product");
        assert!(custom.is_custom());
        assert!(custom.as_str().parse::<Workload>().is_err());
    }
}
