//! The `shell` provisioner: each script (the `inline` lines become one script under
//! `inline_shebang`) is uploaded to `remote_path` and run with `execute_command`, output
//! streamed with the build's prefix. Exit codes outside `valid_exit_codes` fail the build; a
//! lost connection is accepted only with `expect_disconnect`.

use std::path::PathBuf;

use super::env;
use super::ProvisionContext;
use crate::communicator::ExitStatus;
use crate::config::provisioners::ShellConfig;

/// Run the shell provisioner `c`.
pub async fn run(c: &ShellConfig, ctx: &ProvisionContext<'_>) -> Result<(), String> {
    let comm = ctx.comm("shell")?;
    let vars = env::variables(ctx, &c.environment_vars, &c.env)?;
    let rendered_vars = env::render(&vars, c.env_var_format.as_deref());
    let mut scripts: Vec<(String, Vec<u8>)> = Vec::new();
    if !c.inline.is_empty() {
        let mut text = format!("#!{}\n", c.inline_shebang);
        for l in &c.inline {
            text.push_str(l);
            text.push('\n');
        }
        scripts.push(("inline script".into(), text.into_bytes()));
    }
    for path in c.script.iter().chain(&c.scripts) {
        let p = PathBuf::from(path);
        let data = tokio::fs::read(&p)
            .await
            .map_err(|e| format!("cannot read script {path}: {e}"))?;
        scripts.push((path.clone(), data));
    }
    if scripts.is_empty() {
        return Err("nothing to run: set inline, script or scripts".into());
    }
    for (name, data) in scripts {
        let remote = c.remote_path.clone().unwrap_or_else(|| {
            let file = c
                .remote_file
                .clone()
                .unwrap_or_else(|| format!("script_{}.sh", rand_suffix()));
            format!("{}/{file}", c.remote_folder.trim_end_matches('/'))
        });
        ctx.ui
            .say(&format!("Provisioning with shell script: {name}"));
        let mut reader: &[u8] = &data;
        comm.upload(&mut reader, &remote, 0o755)
            .await
            .map_err(|e| format!("uploading {name} to {remote}: {e}"))?;
        let cmd = env::fill(
            &c.execute_command,
            &[
                ("Path", &remote),
                ("Vars", &rendered_vars),
                ("EnvVarFile", ""),
            ],
        );
        let mut out = ctx.ui.output();
        let status = comm
            .exec(&cmd, &mut out)
            .await
            .map_err(|e| format!("running {name}: {e}"))?;
        drop(out);
        match status {
            ExitStatus::Lost if c.expect_disconnect => {
                ctx.ui.say("Remote end disconnected (expect_disconnect)");
                continue;
            }
            ExitStatus::Code(code) if c.valid_exit_codes.contains(&i64::from(code)) => {}
            other => {
                return Err(format!(
                    "script {name} ended with {other}{}",
                    if c.valid_exit_codes == [0] {
                        String::new()
                    } else {
                        format!(" (valid_exit_codes: {:?})", c.valid_exit_codes)
                    }
                ))
            }
        }
        if !c.skip_clean {
            let mut quiet = crate::communicator::Captured::default();
            let rm = format!("rm -f {}", crate::communicator::shell_quote(&remote));
            let _ = comm.exec(&rm, &mut quiet).await;
        }
        if let Some(p) = &c.pause_after {
            tokio::time::sleep(p.clamped()).await;
        }
    }
    Ok(())
}

/// Packer names inline scripts `script_NNNN.sh` with a random number.
fn rand_suffix() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 10_000) as u32
}
