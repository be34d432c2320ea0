//! One function per subcommand. Below this line nothing knows about clap; above it nothing knows
//! how a command works.

pub mod cnc;
pub mod init;
pub mod kubeconfig;
pub mod validate;

use crate::cli::SpecArgs;
use crate::spec::{self, Cluster, Source};
use crate::ui::Printer;

/// What every command gets: the printer and a view of the environment.
pub struct Ctx<'a> {
    pub printer: &'a mut Printer,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    /// Resolve the cluster spec from file, env and flags.
    pub fn cluster(&self, args: &SpecArgs) -> Result<(Cluster, Source), spec::SpecError> {
        spec::resolve(args.file.as_deref(), &args.overrides(), self.env)
    }
}
