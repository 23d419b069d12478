//! The `shell` provisioner: each script (the `inline` lines become one script under
//! `inline_shebang`) is uploaded to `remote_path` (by default `remote_folder`/`remote_file`,
//! one path for all the scripts, as in Packer) and run with `execute_command`, output streamed
//! with the build's prefix. Line endings become Unix ones unless `binary`. Variables reach the
//! script through `{{.Vars}}` or, with `use_env_var_file`, a sourced file. Uploading and
//! starting a script are retried until `start_retry_timeout` (the guest may be rebooting).
//! Exit codes outside `valid_exit_codes` fail the build; a lost connection is accepted only
//! with `expect_disconnect` (or Packer's disconnect code 2300218 in `valid_exit_codes`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::env;
use super::{ProvisionContext, ProvisionError};
use crate::communicator::{Captured, Communicator, CommunicatorError, ExitStatus};
use crate::config::provisioners::ShellConfig;

/// Packer's exit status for "the connection went away" (`packer.CmdDisconnect`).
pub const DISCONNECT_CODE: i64 = 2_300_218;

/// Why the `shell` provisioner failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// A local script could not be read.
    #[error("cannot read script {path}")]
    ReadScript {
        /// The script's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No `inline`, `script` or `scripts`.
    #[error("nothing to run: set inline, script or scripts")]
    NothingToRun,
    /// The connection went away while the script ran, and that was not expected.
    #[error(
        "script {name} disconnected unexpectedly; if it restarts the guest, set \
         expect_disconnect = true (or add {DISCONNECT_CODE} to valid_exit_codes)"
    )]
    Disconnected {
        /// The script.
        name: String,
    },
    /// The script exited with a code outside `valid_exit_codes`.
    #[error("script {name} exited with non-zero exit status: {code}; allowed exit codes are: {allowed:?}")]
    ExitCode {
        /// The script.
        name: String,
        /// Its exit code.
        code: u32,
        /// `valid_exit_codes`.
        allowed: Vec<i64>,
    },
    /// The script was killed.
    #[error("script {name} was killed by signal {signal}")]
    Signal {
        /// The script.
        name: String,
        /// The signal's name.
        signal: String,
    },
    /// An upload or command kept failing until `start_retry_timeout` ran out.
    #[error("{what} (gave up after start_retry_timeout {timeout:?})")]
    GaveUp {
        /// What was being done (`"running inline script"`).
        what: String,
        /// `start_retry_timeout`.
        timeout: Duration,
        /// The last attempt's error.
        #[source]
        source: Box<CommunicatorError>,
    },
}

/// Run the shell provisioner `c`.
pub async fn run(c: &ShellConfig, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
    let comm = ctx.comm("shell")?;
    let vars = env::variables(ctx, &c.environment_vars, &c.env)?;
    let format = c
        .env_var_format
        .as_deref()
        .unwrap_or(if c.use_env_var_file {
            env::FILE_FORMAT
        } else {
            env::INLINE_FORMAT
        });
    let flattened = env::render(&vars, format);
    let scripts = scripts(c).await?;
    let folder = c.remote_folder.trim_end_matches('/');
    let remote = c.remote_path.clone().unwrap_or_else(|| {
        let file = c
            .remote_file
            .clone()
            .unwrap_or_else(|| format!("script_{}.sh", rand_suffix()));
        format!("{folder}/{file}")
    });
    let retry = Retry {
        timeout: c.start_retry_timeout.clamped(),
        ctx,
    };
    let mut env_file = String::new();
    if c.use_env_var_file {
        let path = format!("{folder}/varfile_{}.sh", rand_suffix());
        let data = if c.binary {
            flattened.clone().into_bytes()
        } else {
            unix_line_endings(flattened.as_bytes())
        };
        retry
            .run("uploading the environment variable file", || {
                upload(&comm, &data, &path, 0o600)
            })
            .await?;
        env_file = path;
    }
    let execute_command = c.execute_command();
    for (name, data) in scripts {
        ctx.ui
            .say(&format!("Provisioning with shell script: {name}"));
        let data = if c.binary {
            data
        } else {
            unix_line_endings(&data)
        };
        let cmd = env::fill(
            &execute_command,
            &[
                ("Path", &remote),
                ("Vars", &flattened),
                ("EnvVarFile", &env_file),
            ],
        );
        // Upload and start in one retried unit: a reboot between the two would leave
        // nothing to run.
        let status = retry
            .run(&format!("running {name}"), || async {
                upload(&comm, &data, &remote, 0o755).await?;
                let mut out = ctx.ui.output();
                comm.exec(&cmd, &mut out).await
            })
            .await?;
        check_status(c, &name, &status)?;
        if matches!(status, ExitStatus::Lost) {
            ctx.ui
                .say("Remote end disconnected (expect_disconnect): going on once SSH is back");
        }
        if !c.skip_clean {
            remove(&retry, &comm, &remote).await?;
        }
    }
    if !c.skip_clean && !env_file.is_empty() {
        remove(&retry, &comm, &env_file).await?;
    }
    if let Some(p) = &c.pause_after {
        ctx.ui
            .say(&format!("Pausing {p} after this provisioner..."));
        tokio::time::sleep(p.clamped()).await;
    }
    Ok(())
}

/// The scripts to run as (name shown, contents).
async fn scripts(c: &ShellConfig) -> Result<Vec<(String, Vec<u8>)>, ShellError> {
    let mut scripts = Vec::new();
    if !c.inline.is_empty() {
        let mut text = format!("#!{}\n", c.inline_shebang);
        for l in &c.inline {
            text.push_str(l);
            text.push('\n');
        }
        scripts.push(("inline script".to_owned(), text.into_bytes()));
    }
    for path in c.script.iter().chain(&c.scripts) {
        let data = tokio::fs::read(path)
            .await
            .map_err(|source| ShellError::ReadScript {
                path: path.clone(),
                source,
            })?;
        scripts.push((path.clone(), data));
    }
    if scripts.is_empty() {
        return Err(ShellError::NothingToRun);
    }
    Ok(scripts)
}

fn check_status(c: &ShellConfig, name: &str, status: &ExitStatus) -> Result<(), ShellError> {
    match status {
        ExitStatus::Lost
            if c.expect_disconnect || c.valid_exit_codes.contains(&DISCONNECT_CODE) =>
        {
            Ok(())
        }
        ExitStatus::Lost => Err(ShellError::Disconnected {
            name: name.to_owned(),
        }),
        ExitStatus::Code(code) if c.valid_exit_codes.contains(&i64::from(*code)) => Ok(()),
        ExitStatus::Code(code) => Err(ShellError::ExitCode {
            name: name.to_owned(),
            code: *code,
            allowed: c.valid_exit_codes.clone(),
        }),
        ExitStatus::Signal(s) => Err(ShellError::Signal {
            name: name.to_owned(),
            signal: s.clone(),
        }),
    }
}

async fn upload(
    comm: &Arc<dyn Communicator>,
    data: &[u8],
    remote: &str,
    mode: u32,
) -> Result<(), CommunicatorError> {
    let mut reader = data;
    comm.upload(&mut reader, remote, mode).await
}

/// `rm -f path`, retried until it succeeds (after a reboot the guest needs time to return).
async fn remove(
    retry: &Retry<'_, '_>,
    comm: &Arc<dyn Communicator>,
    path: &str,
) -> Result<(), ProvisionError> {
    let cmd = format!("rm -f {}", crate::communicator::shell_quote(path));
    retry
        .run(&format!("removing {path}"), || async {
            let mut quiet = Captured::default();
            match comm.exec(&cmd, &mut quiet).await? {
                ExitStatus::Code(0) => Ok(()),
                other => Err(CommunicatorError::Remote {
                    what: format!("rm -f {path}"),
                    status: other,
                    stderr: String::from_utf8_lossy(&quiet.stderr).trim().to_owned(),
                }),
            }
        })
        .await
}

/// Retries an operation on communicator errors until `timeout` has passed since the first
/// attempt (Packer's `start_retry_timeout`), waiting 1 s, 2 s, 4 s… (at most 10 s) between.
struct Retry<'a, 'b> {
    timeout: Duration,
    ctx: &'a ProvisionContext<'b>,
}

impl Retry<'_, '_> {
    async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ProvisionError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CommunicatorError>>,
    {
        let start = Instant::now();
        let mut delay = Duration::from_secs(1);
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(source) => {
                    if start.elapsed() + delay > self.timeout {
                        return Err(ShellError::GaveUp {
                            what: what.to_owned(),
                            timeout: self.timeout,
                            source: Box::new(source),
                        }
                        .into());
                    }
                    let e = crate::report::chain(&source);
                    self.ctx
                        .ui
                        .message(&format!("{what} failed ({e}); retrying in {delay:?}"));
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.ctx.cancel.cancelled() => return Err(ProvisionError::Cancelled),
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// CRLF (and a lone trailing CR) to LF, and a final newline, as Packer's `UnixReader` does
/// for scripts that are not `binary`.
pub fn unix_line_endings(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    for line in data.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out
}

/// Packer names scripts `script_NNNN.sh` with a random number below 9999.
fn rand_suffix() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 9999) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_become_unix_ones() {
        assert_eq!(unix_line_endings(b"a\r\nb\r\n"), b"a\nb\n");
        assert_eq!(unix_line_endings(b"a\nb"), b"a\nb\n");
        assert_eq!(unix_line_endings(b"x\ry\r\n"), b"x\ry\n");
        assert_eq!(unix_line_endings(b""), b"");
    }

    #[test]
    fn statuses_against_valid_exit_codes_and_disconnects() {
        let mut c = ShellConfig {
            valid_exit_codes: vec![0, 3],
            ..ShellConfig::default()
        };
        assert!(check_status(&c, "s", &ExitStatus::Code(3)).is_ok());
        let e = check_status(&c, "s", &ExitStatus::Code(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status: 1") && e.contains("[0, 3]"), "{e}");
        let e = check_status(&c, "s", &ExitStatus::Lost)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expect_disconnect"), "{e}");
        c.expect_disconnect = true;
        assert!(check_status(&c, "s", &ExitStatus::Lost).is_ok());
        c.expect_disconnect = false;
        c.valid_exit_codes.push(DISCONNECT_CODE);
        assert!(check_status(&c, "s", &ExitStatus::Lost).is_ok());
        assert!(check_status(&c, "s", &ExitStatus::Signal("KILL".into())).is_err());
    }
}
