//! The `shell-local` post-processor: the shell-local provisioner's runner on the host, with the
//! artifact passed through untouched (Packer always keeps it). Packer's post-processor once took
//! `execute_command` as one string run by `sh -c`; a one-element list keeps meaning that.

use super::{Outcome, PostProcessContext, PostProcessError};
use crate::artifact::Artifact;
use crate::config::provisioners::ShellLocalConfig;

pub(super) async fn run(
    mut c: ShellLocalConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    if c.execute_command.len() == 1 {
        c.execute_command
            .splice(0..0, ["sh".to_string(), "-c".to_string()]);
    }
    let none = std::collections::BTreeMap::new();
    let pctx = crate::provisioner::ProvisionContext {
        ui: ctx.ui,
        communicator: None,
        cancel: ctx.cancel,
        template_dir: ctx.template_dir,
        build_name: &input.build_name,
        build_type: &input.builder_type,
        generated: &none,
    };
    crate::provisioner::shell_local::run(&c, &pctx, &none).await?;
    Ok(Outcome {
        artifact: input.clone(),
        keep_default: true,
        force_keep: true,
    })
}
