//! `generate_pki` (hypervisor): the original's `cnc` — every CA, certificate, kubeconfig and
//! the secret encryption config in `<workDir>/<cluster>/certs_and_configs` (see [`crate::pki`],
//! which decides per file and writes through its own `Wet` gate). Each file created, re-issued
//! or updated is one change; a kept file is none.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::Target;
use crate::engine::hv::{Gate, HvStep, Hx};
use crate::engine::{Change, PkiOp};
use crate::pki::{self, Outcome};

pub struct GeneratePki {
    pub opts: pki::Options,
    /// Also say every file kept (`cnc` does; `up` gives only the counts).
    pub list_kept: bool,
}

impl HvStep for GeneratePki {
    fn id(&self) -> StepId {
        StepId::GeneratePki
    }

    fn target(&self) -> Target {
        Target::Local
    }

    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
        let opts = pki::Options {
            dry_run: gate.dry_run(),
            ..self.opts.clone()
        };
        let report = pki::generate(hx.cluster, &opts)?;
        for e in &report.entries {
            let (op, line) = match &e.outcome {
                Outcome::Created => (PkiOp::Create, format!("  created   {}", e.file)),
                Outcome::Reissued(why) => (
                    PkiOp::Reissue { why: why.clone() },
                    format!("  reissued  {} ({why})", e.file),
                ),
                Outcome::Updated => (PkiOp::Update, format!("  updated   {}", e.file)),
                Outcome::Kept => {
                    if self.list_kept {
                        gate.say(&format!("  kept      {}", e.file));
                    }
                    continue;
                }
                Outcome::Warning(w) => {
                    gate.say(&format!("  warning   {}: {w}", e.file));
                    gate.note(&e.file, w.clone());
                    continue;
                }
            };
            gate.say(&line);
            gate.done(Change::Pki {
                file: e.file.clone(),
                op,
            });
        }
        let (created, changed, kept) = report.counts();
        gate.say(&format!(
            "cnc: {}{created} created, {changed} re-issued or updated, {kept} kept in {}",
            if report.dry_run {
                "dry run, nothing written: would have "
            } else {
                ""
            },
            report.dir.display()
        ));
        Ok(())
    }
}
