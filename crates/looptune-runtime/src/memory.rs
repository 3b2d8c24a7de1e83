//! How much memory a measurement may take, decided before any of it is allocated.
//!
//! A mistyped dimension (`matmul:m=100000,n=100000,k=100000`) must be a clear error, not an
//! allocation failure that aborts the process after it filled the machine's memory. The
//! [`Measurer`](crate::measure::Measurer) estimates the bytes a candidate needs
//! ([`measurement_bytes`]: inputs, the kernel's outputs, the reference's outputs and the
//! interpreter's f64 copy of every tensor for small programs, the nest's temporaries) and refuses
//! it past a [`MemoryLimit`]: by default half of the machine's physical memory, overridable with
//! the [`MEMORY_LIMIT_ENV`] environment variable (bytes, or with a `K`, `M`, `G` or `T` suffix).
//! A refusal is [`MeasureErrorKind::Environment`](crate::MeasureErrorKind::Environment): the
//! kernel is not at fault, and a run with a larger limit measures it.

use looptune_ir::{LoopNest, Program};
use thiserror::Error;

/// The environment variable that overrides the memory limit (bytes, or `512M`, `8G`, ...).
pub const MEMORY_LIMIT_ENV: &str = "LOOPTUNE_MEMORY_LIMIT";

/// The limit when the machine's memory cannot be read: 4 GiB.
const FALLBACK_LIMIT: u64 = 4 << 30;

/// A workload or candidate larger than the limit, or a limit that does not parse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryError {
    /// The estimate passed the limit.
    #[error(
        "`{what}` needs about {} to measure (inputs, outputs, reference and temporaries), \
         more than the limit of {} ({origin}); set {MEMORY_LIMIT_ENV} to change the limit",
        human(*needed),
        human(*limit)
    )]
    TooLarge {
        /// The workload or kernel.
        what: String,
        /// Bytes the estimate says it needs (`u64::MAX` when the estimate overflowed).
        needed: u64,
        /// The limit in force.
        limit: u64,
        /// Where the limit came from.
        origin: String,
    },
    /// The environment variable holds something that is not a size.
    #[error(
        "{MEMORY_LIMIT_ENV}={value:?} is not a number of bytes (such as 2000000000, 512M or 8G)"
    )]
    BadLimit {
        /// The variable's value.
        value: String,
    },
}

/// Bytes as a short human figure (`40.0 GB`), next to the exact count.
fn human(bytes: u64) -> String {
    if bytes == u64::MAX {
        return "more than 2^64 bytes".to_string();
    }
    let gigabytes = bytes as f64 / 1e9;
    if gigabytes >= 1.0 {
        format!("{bytes} bytes ({gigabytes:.1} GB)")
    } else {
        format!("{bytes} bytes ({:.1} MB)", bytes as f64 / 1e6)
    }
}

/// The most bytes one measurement may take, and where that number came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    bytes: u64,
    origin: String,
}

impl MemoryLimit {
    /// A limit of exactly `bytes`.
    pub fn bytes(bytes: u64) -> MemoryLimit {
        MemoryLimit {
            bytes,
            origin: "set by the caller".to_string(),
        }
    }

    /// The limit in force: [`MEMORY_LIMIT_ENV`] if set, else half the machine's memory.
    pub fn from_env() -> Result<MemoryLimit, MemoryError> {
        match std::env::var(MEMORY_LIMIT_ENV) {
            Ok(value) => Ok(MemoryLimit {
                bytes: parse_size(&value).ok_or(MemoryError::BadLimit {
                    value: value.clone(),
                })?,
                origin: format!("{MEMORY_LIMIT_ENV}={value}"),
            }),
            Err(_) => Ok(MemoryLimit::machine()),
        }
    }

    /// Half the machine's physical memory (`/proc/meminfo`), or 4 GiB when that cannot be read.
    pub fn machine() -> MemoryLimit {
        match total_memory() {
            Some(total) => MemoryLimit {
                bytes: total / 2,
                origin: format!("half of this machine's {}", human(total)),
            },
            None => MemoryLimit {
                bytes: FALLBACK_LIMIT,
                origin: "this machine's memory is unknown".to_string(),
            },
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.bytes
    }

    /// `Ok` when `needed` bytes fit, else an error naming `what` and both numbers.
    pub fn check(&self, what: &str, needed: u64) -> Result<(), MemoryError> {
        if needed <= self.bytes {
            Ok(())
        } else {
            Err(MemoryError::TooLarge {
                what: what.to_string(),
                needed,
                limit: self.bytes,
                origin: self.origin.clone(),
            })
        }
    }
}

/// `1234`, `512K`, `512M`, `8G`, `1T` (powers of 1024; a trailing `B` or `iB` is allowed).
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_suffix("iB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(text);
    let (digits, shift) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 10),
        'M' | 'm' => (&text[..text.len() - 1], 20),
        'G' | 'g' => (&text[..text.len() - 1], 30),
        'T' | 't' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kilobytes.checked_mul(1024)
}

/// Checks, before anything is allocated, that measuring `program` fits in the limit in force
/// ([`MemoryLimit::from_env`]); the error names `what` (the workload) and both byte counts.
/// What a command calls first, before it builds or measures anything.
pub fn check_program(what: &str, program: &Program) -> Result<(), MemoryError> {
    MemoryLimit::from_env()?.check(what, program_measurement_bytes(program))
}

/// Bytes of every element of `program`'s tensors (each at its dtype's size), saturating.
fn program_bytes(program: &Program) -> u64 {
    program
        .tensors
        .iter()
        .map(|tensor| {
            tensor
                .shape
                .iter()
                .try_fold(tensor.dtype.size_bytes() as u64, |bytes, &extent| {
                    bytes.checked_mul(u64::try_from(extent).ok()?)
                })
                .unwrap_or(u64::MAX)
        })
        .fold(0, u64::saturating_add)
}

/// What measuring `nest` of `program` needs, roughly and on the generous side: every tensor of
/// the program three times (the inputs and outputs the kernel is called with, the reference,
/// and the interpreter's f64 copies, which are twice the size of f32) plus the nest's buffers
/// (temporaries included). Saturates at `u64::MAX`.
pub fn measurement_bytes(program: &Program, nest: &LoopNest) -> u64 {
    let nest_bytes = nest
        .buffers
        .iter()
        .map(|buffer| (buffer.len() as u64).saturating_mul(buffer.dtype.size_bytes() as u64))
        .fold(0, u64::saturating_add);
    program_bytes(program)
        .saturating_mul(3)
        .saturating_add(nest_bytes)
}

/// What measuring any schedule of `program` needs at least: [`measurement_bytes`] without the
/// schedule's temporaries. The check a caller makes before it builds anything.
pub fn program_measurement_bytes(program: &Program) -> u64 {
    program_bytes(program).saturating_mul(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("8GiB"), Some(8 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn a_large_workload_is_refused_naming_it_and_the_bytes() {
        let workload: looptune_ir::Workload = "matmul:m=100000,n=100000,k=100000".parse().unwrap();
        let program = workload.program(&looptune_ir::Layout::default()).unwrap();
        let needed = program_measurement_bytes(&program);
        assert_eq!(needed, 3 * 3 * 4 * 100000 * 100000);
        let error = MemoryLimit::bytes(1 << 30)
            .check(&workload.to_string(), needed)
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("matmul:m=100000"), "{message}");
        assert!(message.contains("360000000000 bytes"), "{message}");
        assert!(message.contains(MEMORY_LIMIT_ENV), "{message}");
        assert!(MemoryLimit::bytes(1 << 30).check("small", 1000).is_ok());
        assert!(MemoryLimit::machine().limit() > 0);
    }
}
