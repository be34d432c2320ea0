//! The `kubicluster` binary: logging setup, then [`kubicluster::app`].

use std::process::ExitCode;

use kubicluster::ui::Printer;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let cli = match kubicluster::app::parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Prints help/version to stdout, errors to stderr.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let default = if cli.debug {
        "kubicluster=debug"
    } else {
        "kubicluster=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBICLUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let env = |k: &str| std::env::var(k).ok();
    ExitCode::from(kubicluster::app::run(cli, &mut Printer::default(), &env))
}
