//! Turning command-line text into looptune values: workloads, layout choices, time budgets.
//!
//! The parsers return [`Usage`] errors, so a typo exits with code 2 and a message naming the
//! bad part rather than a panic or a generic failure.

pub use super::Usage;
use looptune::{Layout, Program, Workload};
use std::time::Duration;

/// A `--time-budget` in seconds as a duration; a negative or non-finite number is a usage error.
pub fn time_budget(seconds: Option<f64>) -> Result<Option<Duration>, Usage> {
    match seconds {
        Some(seconds) if !(seconds.is_finite() && seconds >= 0.0) => Err(Usage(format!(
            "--time-budget {seconds} must be a number of seconds, at least 0"
        ))),
        Some(seconds) => Ok(Some(Duration::from_secs_f64(seconds))),
        None => Ok(None),
    }
}

/// Parses `op:key=value,...`; the message of a failure is the IR's, which names the bad part.
pub fn workload(text: &str) -> Result<Workload, Usage> {
    text.parse::<Workload>()
        .map_err(|err| Usage(err.to_string()))
}

/// Parses a layout such as `pack=8` (comma-separated `key=value`; an empty string is the
/// default layout).
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
        match key.trim() {
            "pack" => {
                let block: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("`{part}` is not an integer")))?;
                if block < 1 {
                    return Err(bad(format!("`{part}` must be at least 1")));
                }
                if layout.pack_columns.replace(block).is_some() {
                    return Err(bad("`pack` given twice".to_string()));
                }
            }
            other => return Err(bad(format!("unknown key `{other}` (known: pack)"))),
        }
    }
    Ok(layout)
}

/// Builds the workload's program; a layout the operator cannot take is the user's mistake.
pub fn program(workload: &Workload, layout: &Layout) -> Result<Program, Usage> {
    // Only operators that read a matrix along `n` have a column-packed form; the IR ignores the
    // choice for the others, and silently ignoring a flag the user typed would mislead them.
    if let Some(block) = layout.pack_columns {
        if !matches!(workload, Workload::Matmul(_) | Workload::Dense(_)) {
            return Err(Usage(format!(
                "layout `pack={block}` applies to matmul and dense only, not to `{}`",
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
    fn layouts_parse() {
        assert_eq!(layout("").unwrap(), Layout::default());
        assert_eq!(layout("pack=8").unwrap().pack_columns, Some(8));
        assert_eq!(layout(" pack = 4 ").unwrap().pack_columns, Some(4));
    }

    #[test]
    fn bad_layouts_name_the_bad_part() {
        for (text, expected) in [
            ("pack", "`pack` is not of the form key=value"),
            ("pack=x", "`pack=x` is not an integer"),
            ("pack=0", "`pack=0` must be at least 1"),
            ("pack=4,pack=8", "`pack` given twice"),
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
