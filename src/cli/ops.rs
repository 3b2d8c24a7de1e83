//! `looptune ops`: the operator library and the keys of its workload strings.
//!
//! The listing is generated from `looptune_ir::ops::OPERATORS`, the same table the workload
//! parser reads, so it cannot drift from what `lower` and later commands accept.

use looptune::ir::ops::{OpInfo, OPERATORS};
use std::fmt::Write;

/// Prints every operator with its summary and parameters.
pub fn run() -> anyhow::Result<()> {
    print!("{}", listing(OPERATORS));
    Ok(())
}

/// The text of the listing: one block per operator, one line per parameter.
fn listing(operators: &[OpInfo]) -> String {
    let mut out = String::from(
        "A workload is written `op:key=value,...`, e.g. `matmul:m=1024,n=1024,k=1024`.\n",
    );
    for op in operators {
        out.push('\n');
        // Writing to a String cannot fail, so the results are ignored.
        let _ = writeln!(out, "{}: {}", op.name, op.summary);
        let key_width = op.params.iter().map(|p| p.key.len()).max().unwrap_or(0);
        for param in op.params {
            let status = match param.default {
                Some(default) => format!("default {default}"),
                None => "required".to_string(),
            };
            let _ = writeln!(
                out,
                "  {:key_width$}  {:<14}  {}",
                param.key, status, param.help
            );
        }
    }
    out
}
