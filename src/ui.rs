//! The only place that prints. Results go to stdout; progress, reports and errors to stderr, so
//! `kubicluster validate > resolved.yaml` or `kubicluster kubeconfig > admin.kubeconfig` stay clean.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use crate::pki::{Outcome, Report};

/// Where output goes; tests capture it in buffers.
pub struct Printer {
    out: Box<dyn Write>,
    err: Box<dyn Write>,
}

impl Default for Printer {
    fn default() -> Self {
        Printer {
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
        }
    }
}

impl Printer {
    pub fn new(out: Box<dyn Write>, err: Box<dyn Write>) -> Self {
        Printer { out, err }
    }

    /// A result (stdout), written as is.
    pub fn result(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// A status line (stderr).
    pub fn status(&mut self, line: &str) {
        let _ = writeln!(self.err, "{line}");
    }

    /// The error, printed once: `error: …` and, when there is one, `help: …`.
    pub fn error(&mut self, message: &str, hint: Option<&str>) {
        let _ = writeln!(self.err, "error: {message}");
        if let Some(h) = hint {
            let _ = writeln!(self.err, "help: {h}");
        }
    }

    /// What `cnc` did, one line per file, then a summary.
    pub fn pki_report(&mut self, report: &Report) {
        for e in &report.entries {
            let line = match &e.outcome {
                Outcome::Created => format!("  created   {}", e.file),
                Outcome::Reissued(why) => format!("  reissued  {} ({why})", e.file),
                Outcome::Updated => format!("  updated   {}", e.file),
                Outcome::Kept => format!("  kept      {}", e.file),
                Outcome::Warning(w) => format!("  warning   {}: {w}", e.file),
            };
            self.status(&line);
        }
        let (created, changed, kept) = report.counts();
        let dry = if report.dry_run {
            "dry run, nothing written: would have "
        } else {
            ""
        };
        self.status(&format!(
            "cnc: {dry}{created} created, {changed} re-issued or updated, {kept} kept in {}",
            report.dir.display()
        ));
    }
}
