//! Turning command-line text into looptune values: workloads, layout choices, time budgets.
//!
//! The parsers return [`Usage`] errors, so a typo exits with code 2 and a message naming the
//! bad part rather than a panic or a generic failure.

pub use super::Usage;
use looptune::{Layout, Program, Workload};
use std::time::Duration;

/// The longest `--time-budget` accepted: one year.
const MAX_TIME_BUDGET: Duration = Duration::from_secs(365 * 24 * 3600);

/// A `--time-budget` in seconds as a duration; a negative, non-finite or absurdly large number
/// (more than a year) is a usage error naming it.
pub fn time_budget(seconds: Option<f64>) -> Result<Option<Duration>, Usage> {
    seconds
        .map(|seconds| duration("--time-budget", seconds, Duration::ZERO, MAX_TIME_BUDGET))
        .transpose()
}

/// `seconds` of `flag` as a duration from `least` to `most`, or a usage error naming the flag
/// and the value: never the panic of `Duration::from_secs_f64` on a huge or non-finite number.
pub fn duration(
    flag: &str,
    seconds: f64,
    least: Duration,
    most: Duration,
) -> Result<Duration, Usage> {
    let range = || {
        format!(
            "{flag} {seconds} must be a number of seconds from {} to {}",
            least.as_secs_f64(),
            most.as_secs_f64()
        )
    };
    let value = Duration::try_from_secs_f64(seconds).map_err(|_| Usage(range()))?;
    if value < least || value > most || (least.is_zero() && seconds < 0.0) {
        return Err(Usage(range()));
    }
    Ok(value)
}

/// The rule of every `--threads` flag ([`looptune::runtime::target::check_threads`]: from 1 to
/// the host's hardware threads), as a usage error naming the flag.
pub fn threads(requested: u32) -> Result<usize, Usage> {
    looptune::runtime::target::check_threads(requested as usize)
        .map_err(|error| Usage(format!("--threads {error}")))
}

/// Parses `op:key=value,...`; the message of a failure is the IR's, which names the bad part.
pub fn workload(text: &str) -> Result<Workload, Usage> {
    text.parse::<Workload>()
        .map_err(|err| Usage(err.to_string()))
}

/// Parses a layout such as `pack=8` (comma-separated `key=value`; an empty string is the
/// default layout): `pack` packs the matrix read along `n` into panels (matmul, dense),
/// `block_k` splits the reduction of a matrix product into blocks (matmul, dense without an
/// epilogue), `pack_oc` packs conv2d's weights into output-channel blocks.
pub fn layout(text: &str) -> Result<Layout, Usage> {
    let mut layout = Layout::default();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let bad = |message: String| Usage(format!("layout `{text}`: {message}"));
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("`{part}` is not of the form key=value")))?;
        let key = key.trim();
        let slot = match key {
            "pack" => &mut layout.pack_columns,
            "block_k" => &mut layout.block_reduction,
            "pack_oc" => &mut layout.pack_output_channels,
            other => {
                return Err(bad(format!(
                    "unknown key `{other}` (known: pack, block_k, pack_oc)"
                )))
            }
        };
        let block: i64 = value
            .trim()
            .parse()
            .map_err(|_| bad(format!("`{part}` is not an integer")))?;
        if block < 1 {
            return Err(bad(format!("`{part}` must be at least 1")));
        }
        if slot.replace(block).is_some() {
            return Err(bad(format!("`{key}` given twice")));
        }
    }
    Ok(layout)
}

/// Refuses a workload too large to measure on this machine before anything is built or
/// allocated (the limit is half the machine's memory, or `LOOPTUNE_MEMORY_LIMIT`).
pub fn fits_in_memory(workload: &Workload) -> Result<(), Usage> {
    let program = workload
        .program(&Layout::default())
        .map_err(|err| Usage(err.to_string()))?;
    looptune::runtime::memory::check_program(&workload.to_string(), &program)
        .map_err(|err| Usage(err.to_string()))
}

/// Builds the workload's program; a layout the operator cannot take is the user's mistake.
pub fn program(workload: &Workload, layout: &Layout) -> Result<Program, Usage> {
    // Only operators that read a matrix along `n` have a column-packed form; the IR ignores the
    // choice for the others, and silently ignoring a flag the user typed would mislead them.
    let applies = [
        (
            "pack",
            layout.pack_columns,
            matches!(workload, Workload::Matmul(_) | Workload::Dense(_)),
            "matmul and dense",
        ),
        (
            "block_k",
            layout.block_reduction,
            matches!(workload, Workload::Matmul(_) | Workload::Dense(_)),
            "matmul and dense",
        ),
        (
            "pack_oc",
            layout.pack_output_channels,
            matches!(workload, Workload::Conv2d(_)),
            "conv2d",
        ),
    ];
    for (key, value, applies, operators) in applies {
        if let (Some(block), false) = (value, applies) {
            return Err(Usage(format!(
                "layout `{key}={block}` applies to {operators} only, not to `{}`",
                workload.op_name()
            )));
        }
    }
    workload
        .program(layout)
        .map_err(|err| Usage(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_out_of_range_are_usage_errors_not_panics() {
        for (seconds, expected) in [
            (1e308, "--time-budget 100000000000000000000000"),
            (2e19, "--time-budget 20000000000000000000 must be"),
            (-1.0, "--time-budget -1 must be"),
            (f64::NAN, "--time-budget NaN must be"),
            (f64::INFINITY, "--time-budget inf must be"),
        ] {
            let message = time_budget(Some(seconds)).expect_err("refused").to_string();
            assert!(message.contains(expected), "{seconds}: `{message}`");
        }
        assert_eq!(
            time_budget(Some(1.5)).unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(time_budget(None).unwrap(), None);
    }

    #[test]
    fn threads_past_the_cores_are_refused() {
        assert_eq!(threads(1).unwrap(), 1);
        let message = threads(1000).expect_err("1000 threads").to_string();
        assert!(
            message.contains("--threads 1000 must be from 1 to"),
            "{message}"
        );
        assert!(threads(0).is_err());
    }

    #[test]
    fn layouts_parse() {
        assert_eq!(layout("").unwrap(), Layout::default());
        assert_eq!(layout("pack=8").unwrap().pack_columns, Some(8));
        assert_eq!(layout(" pack = 4 ").unwrap().pack_columns, Some(4));
        let both = layout("block_k=64,pack_oc=8").unwrap();
        assert_eq!(both.block_reduction, Some(64));
        assert_eq!(both.pack_output_channels, Some(8));
    }

    #[test]
    fn bad_layouts_name_the_bad_part() {
        for (text, expected) in [
            ("pack", "`pack` is not of the form key=value"),
            ("pack=x", "`pack=x` is not an integer"),
            ("pack=0", "`pack=0` must be at least 1"),
            ("pack=4,pack=8", "`pack` given twice"),
            ("block_k=0", "`block_k=0` must be at least 1"),
            ("pack_oc=2,pack_oc=4", "`pack_oc` given twice"),
            ("tile=4", "unknown key `tile`"),
        ] {
            let message = layout(text).expect_err(text).to_string();
            assert!(
                message.contains(expected),
                "{text}: `{message}` lacks `{expected}`"
            );
        }
    }

    #[test]
    fn packing_is_refused_where_it_means_nothing() {
        let conv = workload("conv2d:ic=4,h=8,w=8,oc=4,kh=3,kw=3").unwrap();
        let layout = layout("pack=4").unwrap();
        let message = program(&conv, &layout).expect_err("conv2d").to_string();
        assert!(message.contains("not to `conv2d`"), "{message}");
    }
}
