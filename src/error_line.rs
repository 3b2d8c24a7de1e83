//! An error and its causes on one line, for programs that print errors to people.

/// `outer: cause: cause`, leaving out a cause whose text the line already holds: an error that
/// prints its source in its own message (a `thiserror` `"...: {source}"` with `#[source]`)
/// would otherwise name it twice ("No such file or directory (os error 2): No such file or
/// directory (os error 2)"), as anyhow's `{:#}` does. The command line and the examples print
/// their errors with it.
pub fn error_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read `x.log`: {source}")]
        struct Repeats {
            #[source]
            source: std::io::Error,
        }
        #[derive(Debug, thiserror::Error)]
        #[error("reading the tuning log")]
        struct Outer {
            #[source]
            source: Repeats,
        }
        let error = Outer {
            source: Repeats { source: io },
        };
        let line = error_line(&error);
        assert_eq!(line.matches(&text).count(), 1, "{line}");
        assert!(
            line.starts_with("reading the tuning log: cannot read `x.log`: "),
            "{line}"
        );
    }
}
