//! `build_image` (hypervisor): the template image, built with mmdebstrap when it is missing
//! (see [`crate::image`]); `up` runs it before the VMs are made. Not in the original, which
//! expected a hand-made template.

use crate::engine::StepId;
use anyhow::Result;

use crate::engine::Change;
use crate::engine::Target;
use crate::engine::hv::{Gate, HvStep, Hx};

pub struct BuildImage;

impl HvStep for BuildImage {
    fn id(&self) -> StepId {
        StepId::BuildImage
    }

    fn target(&self) -> Target {
        Target::Local
    }

    fn run(&self, hx: &Hx, gate: &mut Gate) -> Result<()> {
        let path = hx.cluster.image_path();
        if path.is_file() {
            return Ok(());
        }
        gate.wet(
            Change::BuildImage {
                path: path.display().to_string(),
            },
            || crate::image::build(path, false, crate::image::kernel_args(hx.cluster)).map(|_| ()),
        )?;
        Ok(())
    }
}
