//! The `kubicluster` binary: logging setup, then [`kubicluster::app`].

use std::process::ExitCode;

use kubicluster::ui::Printer;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let cli = match kubicluster::app::parse(args) {
        Ok(cli) => cli,
        Err(kubicluster::app::ParseFailure::Clap(e)) => {
            // Prints help/version to stdout, errors to stderr.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
        Err(kubicluster::app::ParseFailure::Input { message, hint }) => {
            let mut p = Printer::default();
            p.error(&message, Some(&hint));
            return ExitCode::from(2);
        }
    };
    let default = if cli.debug {
        "kubicluster=debug"
    } else {
        "kubicluster=warn"
    };
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    let tty = std::io::stderr().is_terminal();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(tty)
        .without_time()
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBICLUSTER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        );
    // The run log (opened once the cluster is known) always gets debug detail.
    let file = tracing_subscriber::fmt::layer()
        .with_writer(|| kubicluster::logfile::Writer)
        .with_ansi(false)
        .with_target(false)
        .with_filter(tracing_subscriber::EnvFilter::new("kubicluster=debug"));
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    let env = |k: &str| std::env::var(k).ok();
    let code = kubicluster::app::run(cli, &mut Printer::default(), &env);
    // Connections through a remote hypervisor's SSH server end before the C libraries'
    // exit handlers run.
    kubicluster::host::ssh::jump::close_all();
    ExitCode::from(code)
}
