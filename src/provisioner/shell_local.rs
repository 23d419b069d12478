//! `shell-local`: run commands on the host, with the same environment as `shell` plus the
//! build's values. Used as a provisioner and as a post-processor (which adds the artifact's
//! values through `extra`).

use std::collections::BTreeMap;
use std::io::Write;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::env;
use super::ProvisionContext;
use crate::config::provisioners::ShellLocalConfig;

/// Run `c` on the host; `extra` adds variables (post-processor context).
pub async fn run(
    c: &ShellLocalConfig,
    ctx: &ProvisionContext<'_>,
    extra: &BTreeMap<String, String>,
) -> Result<(), String> {
    if !c.only_on.is_empty() && !c.only_on.iter().any(|o| o == std::env::consts::OS) {
        ctx.ui
            .say(&format!("Skipping shell-local: only_on {:?}", c.only_on));
        return Ok(());
    }
    let mut vars = env::variables(ctx, &c.environment_vars, &c.env)?;
    vars.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut scripts: Vec<tempfile::TempPath> = Vec::new();
    let mut named: Vec<String> = Vec::new();
    if let Some(cmd) = &c.command {
        scripts.push(temp_script(&format!("{cmd}\n"), c)?);
    }
    if !c.inline.is_empty() {
        let shebang = c
            .inline_shebang
            .clone()
            .unwrap_or_else(|| "/bin/sh -e".into());
        let mut text = format!("#!{shebang}\n");
        for l in &c.inline {
            text.push_str(l);
            text.push('\n');
        }
        scripts.push(temp_script(&text, c)?);
    }
    named.extend(c.script.iter().chain(&c.scripts).cloned());
    let paths: Vec<String> = scripts
        .iter()
        .map(|p| p.display().to_string())
        .chain(named)
        .collect();
    if paths.is_empty() {
        return Err("nothing to run: set command, inline, script or scripts".into());
    }
    for script in paths {
        let argv: Vec<String> = if c.execute_command.is_empty() {
            vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "{} {}",
                    env::render(&vars, c.env_var_format.as_deref()),
                    shell_words(&script)
                ),
            ]
        } else {
            let rendered = env::render(&vars, c.env_var_format.as_deref());
            c.execute_command
                .iter()
                .map(|a| {
                    env::fill(
                        a,
                        &[
                            ("Vars", &rendered),
                            ("Script", &script),
                            ("Command", &script),
                        ],
                    )
                })
                .collect()
        };
        ctx.ui.say(&format!("Running local shell script: {script}"));
        let (program, args) = argv.split_first().ok_or("execute_command is empty")?;
        let mut child = Command::new(program)
            .args(args)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let ui = ctx.ui.clone();
        let pump = |r: Option<tokio::process::ChildStdout>| {
            let ui = ui.clone();
            async move {
                if let Some(r) = r {
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        ui.message(&l);
                    }
                }
            }
        };
        let ui2 = ctx.ui.clone();
        let pump_err = async move {
            if let Some(r) = err {
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    ui2.message(&l);
                }
            }
        };
        let (_, _, status) = tokio::join!(pump(out), pump_err, child.wait());
        let status = status.map_err(|e| format!("waiting for {program}: {e}"))?;
        let code = status.code().map(i64::from);
        if !code.is_some_and(|c2| c.valid_exit_codes.contains(&c2)) {
            return Err(format!("local script {script} ended with {status}"));
        }
    }
    Ok(())
}

fn temp_script(text: &str, c: &ShellLocalConfig) -> Result<tempfile::TempPath, String> {
    let ext = c.tempfile_extension.clone().unwrap_or_else(|| ".sh".into());
    let mut f = tempfile::Builder::new()
        .prefix("kiln-shell-local")
        .suffix(&ext)
        .tempfile()
        .map_err(|e| format!("cannot create a temporary script: {e}"))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write a temporary script: {e}"))?;
    let path = f.into_temp_path();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("cannot make the script executable: {e}"))?;
    Ok(path)
}

fn shell_words(s: &str) -> String {
    crate::communicator::shell_quote(s)
}
