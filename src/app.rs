//! Entry point shared by the binary and the tests: translate legacy flags, parse, dispatch, print
//! the error once and map it to an exit code (0 ok, 1 failed, 2 bad input).

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::commands::{self, Ctx};
use crate::error::{self, EXIT_BAD_INPUT};
use crate::ui::Printer;

/// Why a command line was not accepted.
pub enum ParseFailure {
    /// clap's own report (also `--help` and `--version`, which are not errors).
    Clap(clap::Error),
    /// A message that names what the user typed (an original flag, an environment variable).
    Input { message: String, hint: String },
}

/// Parse `args` (including the program name) after legacy translation.
pub fn parse(args: Vec<OsString>) -> Result<Cli, ParseFailure> {
    parse_env(args, &|k| std::env::var(k).ok())
}

pub fn parse_env(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Cli, ParseFailure> {
    let typed: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The original's `kubicluster <command> help` form: that command's help.
    let mut args = args;
    if args.len() == 3
        && args[2] == "help"
        && Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == typed[1] && !c.has_subcommands())
    {
        args[2] = "--help".into();
    }
    let (translated, record) = crate::legacy::translate_recorded(args);
    Cli::try_parse_from(translated)
        .map_err(|e| explain(e, &typed, &record, env))
        .map_err(with_hint)
}

/// clap's own errors as one line and a `help:` line, like every other refusal (help and version
/// output, and a bare `kubicluster`, stay clap's).
fn with_hint(f: ParseFailure) -> ParseFailure {
    use clap::error::ErrorKind;
    let ParseFailure::Clap(e) = f else {
        return f;
    };
    if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        return ParseFailure::Clap(e);
    }
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let message = lines
        .next()
        .unwrap_or("the command line does not parse")
        .trim_start_matches("error: ")
        .to_string();
    let usage = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .and_then(|u| u.split_whitespace().nth(1))
        .filter(|c| !c.starts_with('[') && !c.starts_with('<') && !c.starts_with('-'))
        .map(|c| format!("kubicluster {c} --help"))
        .unwrap_or_else(|| "kubicluster --help".into());
    let tip = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .map(|t| format!("{t}; "))
        .unwrap_or_default();
    let hint = if message.contains("'--dry-run'") && usage == "kubicluster up --help" {
        "`kubicluster plan` shows every change `up` would make, without making it".to_string()
    } else {
        format!("{tip}see `{usage}`")
    };
    ParseFailure::Input { message, hint }
}

/// Subcommands (by name) that take `--long`.
fn commands_taking(long: &str) -> Vec<String> {
    let name = long.trim_start_matches("--");
    Cli::command()
        .get_subcommands()
        .filter(|c| {
            c.get_arguments().any(|a| {
                a.get_long() == Some(name)
                    || a.get_all_aliases().is_some_and(|al| al.contains(&name))
            })
        })
        .map(|c| c.get_name().to_string())
        .collect()
}

fn explain(
    e: clap::Error,
    typed: &[String],
    record: &[crate::legacy::Translation],
    env: &dyn Fn(&str) -> Option<String>,
) -> ParseFailure {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return ParseFailure::Clap(e),
    };
    let flag = arg.split([' ', '=']).next().unwrap_or(&arg).to_string();
    let sub = typed.get(1).cloned().unwrap_or_default();
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let Some(t) = record.iter().find(|t| t.long == flag) else {
                return ParseFailure::Clap(e);
            };
            let long = flag.trim_start_matches("--");
            if let Some((_, why)) = crate::legacy::UNSUPPORTED.iter().find(|(l, _)| *l == long) {
                return ParseFailure::Input {
                    message: format!(
                        "{} (an option of the original kubicluster) is not supported",
                        t.original
                    ),
                    hint: format!("{why}; drop it from the command line"),
                };
            }
            let takers = commands_taking(&flag);
            ParseFailure::Input {
                message: format!(
                    "{} ({flag}) is not an option of `kubicluster {sub}`",
                    t.original
                ),
                hint: if takers.is_empty() {
                    "see `kubicluster --help`".into()
                } else {
                    format!("it belongs to: {}", takers.join(", "))
                },
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            // A value from an environment variable, not from the command line?
            let typed_flag = typed
                .iter()
                .any(|a| a == &flag || a.starts_with(&format!("{flag}=")))
                || record.iter().any(|t| t.long == flag);
            let env_name = Cli::command()
                .get_subcommands()
                .find(|c| c.get_name() == sub)
                .and_then(|c| {
                    c.get_arguments()
                        .find(|a| a.get_long() == Some(flag.trim_start_matches("--")))
                        .and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()))
                });
            match env_name {
                Some(var) if !typed_flag => {
                    let value = env(&var).unwrap_or_default();
                    let text = e.render().to_string();
                    let why = text
                        .lines()
                        .next()
                        .and_then(|l| l.rsplit_once("': ").map(|(_, w)| w.to_string()))
                        .unwrap_or_else(|| "invalid value".into());
                    ParseFailure::Input {
                        message: format!("{var}={value}: {why}"),
                        hint: format!("fix or unset {var} (it stands for {flag})"),
                    }
                }
                _ => ParseFailure::Clap(e),
            }
        }
        _ => ParseFailure::Clap(e),
    }
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli, printer: &mut Printer, env: &dyn Fn(&str) -> Option<String>) -> u8 {
    printer.verbose |= cli.debug;
    let mut ctx = Ctx { printer, env };
    let result = match &cli.command {
        Command::Init(a) => commands::init::run(&mut ctx, a),
        Command::Validate(a) => commands::validate::run(&mut ctx, a),
        Command::Cnc(a) => commands::cnc::run(&mut ctx, a),
        Command::Kubeconfig(a) => commands::kubeconfig::run(&mut ctx, a),
        Command::Prepare(a) => commands::prepare::run(&mut ctx, a),
        Command::Image(a) => commands::image::run(&mut ctx, a),
        Command::Artifacts(a) => commands::artifacts::run(&mut ctx, a),
        Command::CreateVms(a) => commands::vms::run_create(&mut ctx, a),
        Command::CreateControllers(a) => commands::controllers::run(&mut ctx, a),
        Command::CreateWorkers(a) => commands::workers::run(&mut ctx, a),
        Command::Remove(a) => commands::remove::run(&mut ctx, a),
        Command::Upgrade(a) => commands::upgrade::run(&mut ctx, a),
        Command::Test(a) => commands::smoke::run(&mut ctx, a),
        Command::Cis(a) => commands::cis::run(&mut ctx, a),
        Command::Plan(a) => commands::plan::run(&mut ctx, a),
        Command::Render(a) => commands::render::run(&mut ctx, a),
        Command::Destroy(a) => commands::vms::run_destroy(&mut ctx, a),
        Command::Status(a) => commands::vms::run_status(&mut ctx, a),
        Command::Up(a) => commands::up::run(&mut ctx, a),
        Command::Stop(a) => commands::lifecycle::run_stop(&mut ctx, a),
        Command::Start(a) => commands::lifecycle::run_start(&mut ctx, a),
        Command::Etcd(a) => commands::etcd::run(&mut ctx, a),
        Command::Snapshot(a) => commands::snapshot::run(&mut ctx, a),
        Command::List(a) => commands::list::run(&mut ctx, a),
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
    match parse_env(args, env) {
        Ok(cli) => run(cli, printer, env),
        Err(ParseFailure::Input { message, hint }) => {
            printer.error(&message, Some(&hint));
            EXIT_BAD_INPUT
        }
        Err(ParseFailure::Clap(e)) => {
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
