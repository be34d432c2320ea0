//! Entry point shared by the binary and the tests: translate legacy flags, parse, dispatch, print
//! the error once and map it to an exit code (0 ok, 1 failed, 2 bad input).

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::commands::{self, Ctx};
use crate::error::{self, EXIT_BAD_INPUT};
use crate::ui::Printer;

/// Parse `args` (including the program name) after legacy translation.
pub fn parse(args: Vec<OsString>) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(crate::legacy::translate(args))
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli, printer: &mut Printer, env: &dyn Fn(&str) -> Option<String>) -> u8 {
    printer.verbose |= cli.debug;
    commands::DEBUG.store(cli.debug, std::sync::atomic::Ordering::Relaxed);
    let mut ctx = Ctx { printer, env };
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(&mut ctx, a),
        Command::Validate(a) => commands::validate::run(&mut ctx, a),
        Command::Cnc(a) => commands::cnc::run(&mut ctx, a),
        Command::Kubeconfig(a) => commands::kubeconfig::run(&mut ctx, a),
        Command::Prepare(a) => commands::prepare::run(&mut ctx, a),
        Command::Image(a) => commands::image::run(&mut ctx, a),
        Command::CreateVms(a) => commands::vms::run_create(&mut ctx, a),
        Command::CreateControllers(a) => commands::controllers::run(&mut ctx, a),
        Command::CreateWorkers(a) => commands::workers::run(&mut ctx, a),
        Command::Remove(a) => commands::remove::run(&mut ctx, a),
        Command::Test(a) => commands::smoke::run(&mut ctx, a),
        Command::Plan(a) => commands::plan::run(&mut ctx, a),
        Command::Render(a) => commands::render::run(&mut ctx, a),
        Command::Destroy(a) => commands::vms::run_destroy(&mut ctx, a),
        Command::Status(a) => commands::vms::run_status(&mut ctx, a),
        Command::Up(a) => commands::up::run(&mut ctx, a),
        Command::Lab(a) => commands::lab::run(&mut ctx, a),
        Command::Completions(a) => {
            let mut buf = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "kubicluster", &mut buf);
            ctx.printer.result(&String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Version => {
            ctx.printer
                .result(&format!("kubicluster {}\n", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<error::Exit>().is_some() => {
            e.downcast_ref::<error::Exit>().map_or(1, |x| x.0)
        }
        Err(e) => {
            let (code, hint) = error::classify(&e);
            ctx.printer.error(&format!("{e:#}"), hint.as_deref());
            code
        }
    }
}

/// Parse and run; clap's own errors (and --help/--version) are printed by clap.
pub fn main_with(
    args: Vec<OsString>,
    printer: &mut Printer,
    env: &dyn Fn(&str) -> Option<String>,
) -> u8 {
    match parse(args) {
        Ok(cli) => run(cli, printer, env),
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let text = e.render().to_string();
            if e.use_stderr() {
                printer.status(text.trim_end());
            } else {
                printer.result(&text);
            }
            code
        }
    }
}
