//! `kubicluster lab up|down|status`: the private libvirtd sandbox (see [`crate::lab`]).

use anyhow::Result;

use super::Ctx;
use crate::cli::{LabAction, LabArgs};
use crate::lab;

pub fn run(ctx: &mut Ctx, args: &LabArgs) -> Result<()> {
    let spec = match &args.action {
        LabAction::Up(s) | LabAction::Down(s) | LabAction::Status(s) | LabAction::Reboot(s) => {
            &s.spec
        }
    };
    // `lab` speaks of the lab whatever the file says: resolved as with --lab (the pool's default
    // directory follows the mode).
    let mut overrides = spec.overrides();
    overrides.lab = true;
    let (cluster, _) = crate::spec::resolve(spec.file.as_deref(), &overrides, ctx.env)?;
    match &args.action {
        LabAction::Up(_) => {
            let (state, started) = lab::up(&cluster)?;
            let verb = if started {
                "started"
            } else {
                "already running"
            };
            ctx.printer.status(&format!(
                "lab {verb}: namespace {}, libvirtd pid {}, {}",
                state.netns, state.pid, state.uri
            ));
        }
        LabAction::Down(_) => {
            let removed = lab::down(&cluster)?;
            ctx.printer.status(if removed {
                "lab removed: VMs, networks, daemon, namespace and files"
            } else {
                "no lab to remove"
            });
        }
        LabAction::Reboot(_) => {
            let t = std::time::Instant::now();
            let running = lab::reboot(&cluster)?;
            ctx.printer.status(&format!(
                "lab rebooted in {:.0} s: libvirtd started again; running (autostart): {}",
                t.elapsed().as_secs_f64(),
                if running.is_empty() {
                    "none".to_string()
                } else {
                    running.join(", ")
                }
            ));
        }
        LabAction::Status(_) => match (lab::state(&cluster)?, lab::recorded(&cluster)?) {
            (Some(s), _) => ctx.printer.result(&format!(
                "running: namespace {}, libvirtd pid {}, {}\n",
                s.netns, s.pid, s.uri
            )),
            (None, Some(dead)) => {
                ctx.printer.result(&format!(
                    "DAEMON DEAD: libvirtd pid {} is gone; namespace {} and the VMs' files are kept\n",
                    dead.pid, dead.netns
                ));
                ctx.printer
                    .status(&format!("lab status: {}", lab::DEAD_DAEMON_HINT));
                return Err(crate::error::Exit(crate::error::EXIT_UNHEALTHY).into());
            }
            (None, None) => ctx.printer.result("not running\n"),
        },
    }
    Ok(())
}
