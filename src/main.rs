//! The `looptune` command-line tool; see [`cli`] for its commands.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
