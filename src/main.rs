//! The `logzio-tokens` binary: everything happens in the library; this maps the outcome to the
//! documented exit code.

fn main() -> std::process::ExitCode {
    logzio_tokens::cli::run()
}
