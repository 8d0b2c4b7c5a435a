//! Which lines of the eBPF crate's cargo output a person needs to see.
//! Included by build.rs and by a unit test in src/lib.rs.

/// What to do with one line the inner `cargo build` wrote to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Progress (`Compiling core ...`, `Finished ...`): the build script's
    /// own stderr, which cargo shows with `-vv` and when the build fails.
    Progress,
    /// A warning or error of cargo's own: shown as a `cargo:warning`.
    Warning,
}

/// Cargo's status lines are a right-aligned verb (`   Compiling`,
/// `    Finished`, `  Downloaded`); its own diagnostics start with
/// `warning:` or `error:`, and their continuation lines are indented or
/// start with `note:`/`help:`/`Caused by:`.
pub fn classify(line: &str, in_diagnostic: bool) -> Line {
    let trimmed = line.trim_start();
    if line.starts_with("warning") || line.starts_with("error") {
        return Line::Warning;
    }
    let first_word = trimmed.split_whitespace().next().unwrap_or("");
    let status_verb = line.len() > trimmed.len()
        && first_word.starts_with(|c: char| c.is_ascii_uppercase())
        && first_word.chars().all(|c| c.is_ascii_alphabetic());
    if in_diagnostic && !status_verb && !line.is_empty() {
        return Line::Warning;
    }
    Line::Progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_not_a_warning_and_warnings_are() {
        let lines = [
            ("   Compiling core v0.0.0 (/root/.rustup/toolchains/stable/lib/rustlib/src/rust/library/core)", Line::Progress),
            ("   Compiling tracer-ebpf v0.1.0 (/work/tracer-ebpf)", Line::Progress),
            ("    Finished `release` profile [optimized] target(s) in 45.38s", Line::Progress),
            ("  Downloaded compiler_builtins v0.1.160", Line::Progress),
            ("warning: `tracer-ebpf` (bin \"tracer-ebpf\") generated 1 warning", Line::Warning),
            ("error: could not compile `tracer-ebpf` (bin \"tracer-ebpf\") due to 1 previous error", Line::Warning),
        ];
        for (line, want) in lines {
            assert_eq!(classify(line, false), want, "{line}");
        }
        // A diagnostic's continuation lines stay with it; the next status ends it.
        assert_eq!(classify("Caused by:", true), Line::Warning);
        assert_eq!(classify("  process didn't exit successfully", true), Line::Warning);
        assert_eq!(classify("   Compiling tracer-common v0.1.0", true), Line::Progress);
    }
}
