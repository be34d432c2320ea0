//! The only place that prints. Results go to stdout; progress, reports and errors to stderr, so
//! `kubicluster validate > resolved.yaml` or `kubicluster kubeconfig > admin.kubeconfig` stay clean.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

/// Where output goes; tests capture it in buffers.
pub struct Printer {
    out: Box<dyn Write>,
    err: Box<dyn Write>,
    /// `-d`: every change of every node, not only on dry runs.
    pub verbose: bool,
    /// stderr is a terminal: a progress bar per step (plain lines otherwise).
    tty: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl Default for Printer {
    fn default() -> Self {
        Printer {
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            verbose: false,
            tty: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            bar: None,
        }
    }
}

impl Printer {
    pub fn new(out: Box<dyn Write>, err: Box<dyn Write>) -> Self {
        Printer {
            out,
            err,
            verbose: false,
            tty: false,
            bar: None,
        }
    }

    /// A result (stdout), written as is.
    pub fn result(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// A status line (stderr), above the progress bar when there is one.
    pub fn status(&mut self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => {
                let _ = writeln!(self.err, "{line}");
            }
        }
    }

    /// A step begins on `nodes` nodes: its line, and on a terminal a bar counting the nodes.
    pub fn step_started(&mut self, step: &str, index: usize, of: usize, nodes: usize) {
        self.finish_bar();
        self.status(&format!("[{index}/{of}] {step} on {nodes} node(s)"));
        if self.tty && nodes > 0 {
            let b = indicatif::ProgressBar::new(nodes as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {pos}/{len} nodes, {elapsed}",
            ) {
                b.set_style(style);
            }
            b.set_message(step.to_string());
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            self.bar = Some(b);
        }
    }

    fn finish_bar(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    /// The error, printed once: `error: …` and, when there is one, `help: …`.
    pub fn error(&mut self, message: &str, hint: Option<&str>) {
        let _ = writeln!(self.err, "error: {message}");
        if let Some(h) = hint {
            let _ = writeln!(self.err, "help: {h}");
        }
    }

    /// One node's result in one step: its changes (always on a dry run, at `-d` otherwise).
    /// One node's outcome of a step; `name_step` when the heading above is another step's.
    pub fn node_report(&mut self, r: &crate::engine::NodeReport, dry_run: bool, name_step: bool) {
        let what = if let Some(e) = &r.error {
            format!("FAILED: {e}")
        } else if r.changes.is_empty() {
            "up to date".to_string()
        } else if dry_run {
            format!("{} change(s) pending", r.changes.len())
        } else {
            format!(
                "{} change(s) applied, {} restart(s)",
                r.applied,
                r.restarts.len()
            )
        };
        let who = if name_step {
            format!("{} ({})", r.node, r.step)
        } else {
            r.node.clone()
        };
        self.status(&format!("  {who}: {what} ({:.1} s)", r.seconds));
        if dry_run || self.verbose {
            for c in &r.changes {
                self.status(&format!("      {c}"));
            }
        }
        for (unit, why) in &r.not_started {
            self.status(&format!("      not started: {unit}: {why}"));
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// The end of an engine run: duration, changes, restarts, and what was not started.
    pub fn run_summary(&mut self, title: &str, r: &crate::engine::Report) {
        self.finish_bar();
        let mut not_started: Vec<String> = Vec::new();
        for n in &r.nodes {
            for (unit, why) in &n.not_started {
                let line = format!("{unit} on {}: {why}", n.node);
                if !not_started.contains(&line) {
                    not_started.push(line);
                }
            }
        }
        let verb = if r.dry_run {
            "dry run, nothing changed: would make"
        } else {
            "made"
        };
        self.status(&format!(
            "{title}: {verb} {} change(s) on {} node step(s), {} restart(s), in {:.1} s",
            r.changes(),
            r.nodes.len(),
            r.restarts(),
            r.seconds
        ));
        if !not_started.is_empty() {
            self.status(&format!("{title}: NOT started ({}):", not_started.len()));
            for l in not_started {
                self.status(&format!("  - {l}"));
            }
        }
    }
}
