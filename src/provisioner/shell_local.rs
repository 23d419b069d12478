//! `shell-local`: run commands on the host, with the same environment as `shell` (in
//! `{{.Vars}}` and in the process environment) plus the build's values. Used as a provisioner
//! and as a post-processor (which adds the artifact's values through `extra`). Packer's
//! defaults: `execute_command` `["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]`, `inline_shebang`
//! `/bin/sh -e`; `command` is one inline line.

use std::collections::BTreeMap;
use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::env;
use super::{ProvisionContext, ProvisionError};
use crate::config::provisioners::ShellLocalConfig;
use crate::ui::BuildUi;

/// Why `shell-local` failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellLocalError {
    /// No `command`, `inline`, `script` or `scripts`.
    #[error("nothing to run: set command, inline, script or scripts")]
    NothingToRun,
    /// `execute_command = []`.
    #[error("execute_command is empty")]
    EmptyExecuteCommand,
    /// The script's exit code is not in `valid_exit_codes`.
    #[error("local script {script} ended with {status}; allowed exit codes are: {allowed:?}")]
    ExitCode {
        /// The script.
        script: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// `valid_exit_codes`.
        allowed: Vec<i64>,
    },
    /// A host program could not be started or waited for, or the inline script written
    /// (`what` says which).
    #[error("{what}")]
    Host {
        /// `cannot run ansible-playbook`.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn host(what: String) -> impl FnOnce(std::io::Error) -> ShellLocalError {
    move |source| ShellLocalError::Host { what, source }
}

/// Run `c` on the host; `extra` adds variables (post-processor context).
pub async fn run(
    c: &ShellLocalConfig,
    ctx: &ProvisionContext<'_>,
    extra: &BTreeMap<String, String>,
) -> Result<(), ProvisionError> {
    if !c.only_on.is_empty() && !c.only_on.iter().any(|o| o == std::env::consts::OS) {
        ctx.ui.say("Skipping shell-local due to runtime OS");
        return Ok(());
    }
    let mut vars = env::variables(ctx, &c.environment_vars, &c.env)?;
    vars.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let inline: Vec<&String> = c.command.iter().chain(&c.inline).collect();
    // Keeps the inline script alive until the commands ran.
    let mut temp = None;
    let scripts: Vec<String> = if inline.is_empty() {
        c.script.iter().chain(&c.scripts).cloned().collect()
    } else {
        let shebang = c.inline_shebang.as_deref().unwrap_or("/bin/sh -e");
        let mut text = format!("#!{shebang}\n");
        for l in inline {
            text.push_str(l);
            text.push('\n');
        }
        let t = temp_script(&text, c)?;
        let path = t.display().to_string();
        temp = Some(t);
        vec![path]
    };
    if scripts.is_empty() {
        return Err(ShellLocalError::NothingToRun.into());
    }
    let flattened = env::render(
        &vars,
        c.env_var_format.as_deref().unwrap_or(env::INLINE_FORMAT),
    );
    let execute: Vec<String> = if c.execute_command.is_empty() {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "{{.Vars}} {{.Script}}".into(),
        ]
    } else {
        c.execute_command.clone()
    };
    for script in scripts {
        let script = std::path::absolute(&script)
            .map(|p| p.display().to_string())
            .unwrap_or(script);
        let argv: Vec<String> = execute
            .iter()
            .map(|a| {
                env::fill(
                    a,
                    &[
                        ("Vars", &flattened),
                        ("Script", &script),
                        ("Command", &script),
                    ],
                )
            })
            .collect();
        ctx.ui.say(&format!("Running local shell script: {script}"));
        let (program, args) = argv
            .split_first()
            .ok_or(ShellLocalError::EmptyExecuteCommand)?;
        let status = run_streamed(program, args, vars.iter().cloned(), ctx.ui).await?;
        let code = status.code().map(i64::from);
        if !code.is_some_and(|code| c.valid_exit_codes.contains(&code)) {
            return Err(ShellLocalError::ExitCode {
                script,
                status,
                allowed: c.valid_exit_codes.clone(),
            }
            .into());
        }
    }
    drop(temp);
    Ok(())
}

/// Run `program args…` on the host with `envs` added, stdin closed, its output printed line by
/// line with the build's prefix; killed if the caller is dropped (timeout, Ctrl-C).
pub(super) async fn run_streamed(
    program: &str,
    args: &[String],
    envs: impl IntoIterator<Item = (String, String)>,
    ui: &BuildUi,
) -> Result<std::process::ExitStatus, ShellLocalError> {
    tracing::debug!(program, ?args, "starting a host command");
    let began = std::time::Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(envs)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(host(format!("cannot run {program}")))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let (_, _, status) = tokio::join!(pump(out, ui), pump(err, ui), child.wait());
    tracing::debug!(program, ?status, took = ?began.elapsed(), "host command ended");
    status.map_err(host(format!("waiting for {program}")))
}

/// Print what `r` yields line by line with the build's prefix.
async fn pump(r: Option<impl AsyncRead + Unpin>, ui: &BuildUi) {
    if let Some(r) = r {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            ui.message(&l);
        }
    }
}

fn temp_script(text: &str, c: &ShellLocalConfig) -> Result<tempfile::TempPath, ShellLocalError> {
    let ext = c
        .tempfile_extension
        .as_deref()
        .map(|e| format!(".{}", e.trim_start_matches('.')))
        .unwrap_or_default();
    let mut f = tempfile::Builder::new()
        .prefix("packer-shell")
        .suffix(&ext)
        .tempfile()
        .map_err(host("cannot create a temporary script".into()))?;
    f.write_all(text.as_bytes())
        .map_err(host("cannot write a temporary script".into()))?;
    let path = f.into_temp_path();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(host("cannot make the script executable".into()))?;
    Ok(path)
}
