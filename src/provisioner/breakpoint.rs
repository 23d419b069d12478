//! `breakpoint`: pause the build until Enter is pressed, so the guest can be inspected. Off
//! a terminal (CI) it says it is skipped rather than waiting forever.

use std::io::IsTerminal;

use super::{ProvisionContext, ProvisionError};
use crate::config::provisioners::BreakpointConfig;

/// Run the breakpoint `c`.
pub async fn run(c: &BreakpointConfig, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
    if c.disable {
        ctx.ui.say("Breakpoint disabled, continuing");
        return Ok(());
    }
    let note = c
        .note
        .clone()
        .unwrap_or_else(|| "this is a breakpoint".into());
    if !std::io::stdin().is_terminal() {
        ctx.ui.say(&format!(
            "Breakpoint ({note}) skipped: standard input is not a terminal"
        ));
        return Ok(());
    }
    ctx.ui.say(&format!(
        "Pausing at breakpoint provisioner with note \"{note}\". Press enter to continue."
    ));
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .map_err(ProvisionError::Breakpoint)
}
