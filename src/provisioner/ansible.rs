//! `ansible` and `ansible-local`: run a playbook against the guest.
//!
//! `ansible` runs the host's `ansible-playbook` straight at the guest's forwarded SSH port
//! (what Packer calls `use_proxy = false`; kiln has no SSH proxy). It writes, in a private
//! temporary directory removed afterwards: the inventory (`host_alias` with `ansible_host`,
//! `ansible_port`, `ansible_user`, in `groups`, plus `empty_groups`), the build's private key
//! (mode 0600, passed with `--private-key`) and a variables file (mode 0600, passed as
//! `-e @file`) with the password and Packer's `packer_build_name`, `packer_builder_type`,
//! `packer_http_addr`. No secret is ever on the command line kiln prints. Password logins need
//! `sshpass` on the host, as ansible's ssh connection does.
//!
//! `ansible-local` uploads the playbook (with `playbook_dir`, `role_paths`, `group_vars`,
//! `host_vars`, an `inventory_file`) to `staging_directory` and runs `command` on the guest
//! with a local connection.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::{env, shell_local, ProvisionContext, ProvisionError};
use crate::communicator::{shell_quote, Captured, CommunicatorError, ExitStatus};
use crate::config::provisioners::{AnsibleConfig, AnsibleLocalConfig};

/// Why `ansible` or `ansible-local` failed.
#[derive(Debug, thiserror::Error)]
pub enum AnsibleError {
    /// No `playbook_file`.
    #[error("the ansible provisioner needs a playbook_file")]
    NoPlaybook,
    /// The build has no SSH address to point ansible at.
    #[error("the ansible provisioner needs the guest's SSH address (communicator = \"ssh\")")]
    NoSshAddress,
    /// `command --version` could not be run.
    #[error("cannot run {command}\nhint: install ansible (Debian: apt-get install ansible sshpass) or set command")]
    NotInstalled {
        /// `command`.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `command --version` failed.
    #[error("{command} --version failed: {status}")]
    Version {
        /// `command`.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// A local file operation failed (`what` names it and the path).
    #[error("{what}")]
    Local {
        /// `cannot write the inventory /x`.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An `ansible_env_vars` entry without `=`.
    #[error("ansible_env_vars entry {0:?} is not NAME=value")]
    EnvVar(String),
    /// `ansible-galaxy` failed.
    #[error("{command} ended with {status}")]
    Galaxy {
        /// `galaxy_command`.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// `ansible-playbook` failed on the host.
    #[error(
        "{command} ended with {status}\nhint: the output above has ansible's reason (a password \
         login needs sshpass on this host; the guest needs python3)"
    )]
    Playbook {
        /// `command`.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
    },
    /// Talking to the guest failed (`what` says doing what).
    #[error("{what}")]
    Guest {
        /// `uploading site.yml`.
        what: String,
        /// Why.
        #[source]
        source: Box<CommunicatorError>,
    },
    /// A command on the guest failed.
    #[error("{command}: {status}: {stderr}")]
    GuestCommand {
        /// The command.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `ansible-playbook` failed on the guest.
    #[error(
        "ansible-playbook on the guest ended with {0}\nhint: the guest needs ansible \
         (and python3); set command to where it is"
    )]
    GuestPlaybook(ExitStatus),
}

fn local(what: String) -> impl FnOnce(std::io::Error) -> AnsibleError {
    move |source| AnsibleError::Local { what, source }
}

fn guest(what: String) -> impl FnOnce(CommunicatorError) -> AnsibleError {
    move |source| AnsibleError::Guest {
        what,
        source: Box::new(source),
    }
}

/// Run the `ansible` provisioner `c`.
pub async fn run(c: &AnsibleConfig, ctx: &ProvisionContext<'_>) -> Result<(), ProvisionError> {
    let playbook = c.playbook_file.as_deref().ok_or(AnsibleError::NoPlaybook)?;
    let get = |k: &str| ctx.generated.get(k).cloned();
    let (Some(host), Some(port)) = (get("Host"), get("Port")) else {
        return Err(AnsibleError::NoSshAddress.into());
    };
    let user = c.user.clone().or_else(|| get("User")).unwrap_or_default();
    if c.use_proxy == Some(true) || c.local_port.is_some() {
        ctx.ui.warn(
            "ansible: kiln runs ansible-playbook straight at the guest's SSH port; \
             use_proxy and local_port are ignored",
        );
    }
    if !c.skip_version_check {
        let out = Command::new(&c.command)
            .arg("--version")
            .output()
            .await
            .map_err(|source| AnsibleError::NotInstalled {
                command: c.command.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(AnsibleError::Version {
                command: c.command.clone(),
                status: out.status,
            }
            .into());
        }
    }
    let dir = crate::child::private_tempdir("kiln-ansible")
        .map_err(local("cannot create a temporary directory".into()))?;
    let inventory = match &c.inventory_file {
        Some(f) => PathBuf::from(f),
        None => write_inventory(c, dir.path(), &host, &port, &user)?,
    };
    let mut vars = serde_json::Map::new();
    vars.insert("packer_build_name".into(), ctx.build_name.into());
    vars.insert("packer_builder_type".into(), ctx.build_type.into());
    vars.insert(
        "packer_http_addr".into(),
        get("PackerHTTPAddr").unwrap_or_default().into(),
    );
    if let Some(pw) = get("Password") {
        vars.insert("ansible_password".into(), pw.into());
    }
    let vars_file = dir.path().join("vars.json");
    private_file(
        &vars_file,
        serde_json::Value::Object(vars).to_string().as_bytes(),
    )?;
    let mut args: Vec<String> = vec!["-e".into(), format!("@{}", vars_file.display())];
    if let Some(pem) = get("SSHPrivateKey") {
        let key = dir.path().join("key");
        private_file(&key, pem.as_bytes())?;
        args.extend(["--private-key".into(), key.display().to_string()]);
    }
    let ssh_extra = if c.ansible_ssh_extra_args.is_empty() {
        "-o IdentitiesOnly=yes".to_owned()
    } else {
        c.ansible_ssh_extra_args.join(" ")
    };
    args.push(format!("--ssh-extra-args={ssh_extra}"));
    if let Some(galaxy) = &c.galaxy_file {
        galaxy_install(c, ctx, galaxy).await?;
    }
    args.extend(c.extra_arguments.iter().cloned());
    args.extend([
        "-i".into(),
        inventory.display().to_string(),
        playbook.into(),
    ]);

    let mut envs: BTreeMap<String, String> = env::variables(ctx, &[], &BTreeMap::new())?
        .into_iter()
        .collect();
    // Guests are new each build: their host keys cannot be known in advance.
    envs.insert("ANSIBLE_HOST_KEY_CHECKING".into(), "False".into());
    for kv in &c.ansible_env_vars {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| AnsibleError::EnvVar(kv.clone()))?;
        envs.insert(k.into(), v.into());
    }
    if let Some(p) = &c.roles_path {
        envs.insert("ANSIBLE_ROLES_PATH".into(), p.clone());
    }
    if let Some(p) = &c.collections_path {
        envs.insert("ANSIBLE_COLLECTIONS_PATHS".into(), p.clone());
    }
    ctx.ui.say(&format!(
        "Executing Ansible: {} {}",
        c.command,
        args.join(" ")
    ));
    let status = run_local(&c.command, &args, &envs, ctx).await?;
    if c.keep_inventory_file && c.inventory_file.is_none() {
        let kept = c
            .inventory_directory
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("kiln-ansible-inventory-{}", ctx.build_name));
        std::fs::copy(&inventory, &kept).map_err(local(format!(
            "cannot keep the inventory at {}",
            kept.display()
        )))?;
        ctx.ui
            .say(&format!("Kept the inventory file: {}", kept.display()));
    }
    drop(dir);
    if !status.success() {
        return Err(AnsibleError::Playbook {
            command: c.command.clone(),
            status,
        }
        .into());
    }
    Ok(())
}

/// Packer's inventory: the host line, then `[group]` sections naming it, then empty groups.
fn inventory_text(c: &AnsibleConfig, host: &str, port: &str, user: &str) -> String {
    let alias = &c.host_alias;
    let mut text = format!("{alias} ansible_host={host} ansible_port={port}");
    if !user.is_empty() {
        text.push_str(&format!(" ansible_user={user}"));
    }
    text.push('\n');
    for g in &c.groups {
        text.push_str(&format!("[{g}]\n{alias}\n"));
    }
    for g in &c.empty_groups {
        text.push_str(&format!("[{g}]\n"));
    }
    text
}

fn write_inventory(
    c: &AnsibleConfig,
    tmp: &Path,
    host: &str,
    port: &str,
    user: &str,
) -> Result<PathBuf, AnsibleError> {
    let dir = c
        .inventory_directory
        .as_deref()
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.to_path_buf());
    let path = if c.inventory_directory.is_some() {
        tempfile::Builder::new()
            .prefix("packer-provisioner-ansible")
            .tempfile_in(&dir)
            .and_then(|f| f.into_temp_path().keep().map_err(|e| e.error))
            .map_err(local(format!(
                "cannot create an inventory in {}",
                dir.display()
            )))?
    } else {
        dir.join("inventory")
    };
    std::fs::write(&path, inventory_text(c, host, port, user)).map_err(local(format!(
        "cannot write the inventory {}",
        path.display()
    )))?;
    Ok(path)
}

/// A file only its owner can read, created with that mode (never readable in between).
fn private_file(path: &Path, data: &[u8]) -> Result<(), AnsibleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(local(format!("cannot create {}", path.display())))?;
    f.write_all(data)
        .map_err(local(format!("cannot write {}", path.display())))
}

async fn galaxy_install(
    c: &AnsibleConfig,
    ctx: &ProvisionContext<'_>,
    file: &str,
) -> Result<(), ProvisionError> {
    let mut args: Vec<String> = vec!["install".into(), "-r".into(), file.into()];
    if let Some(p) = &c.roles_path {
        args.extend(["-p".into(), p.clone()]);
    }
    if c.galaxy_force_install {
        args.push("--force".into());
    }
    if c.galaxy_force_with_deps {
        args.push("--force-with-deps".into());
    }
    ctx.ui.say(&format!(
        "Executing Ansible Galaxy: {} {}",
        c.galaxy_command,
        args.join(" ")
    ));
    let status = run_local(&c.galaxy_command, &args, &BTreeMap::new(), ctx).await?;
    if status.success() {
        Ok(())
    } else {
        Err(AnsibleError::Galaxy {
            command: c.galaxy_command.clone(),
            status,
        }
        .into())
    }
}

async fn run_local(
    program: &str,
    args: &[String],
    envs: &BTreeMap<String, String>,
    ctx: &ProvisionContext<'_>,
) -> Result<std::process::ExitStatus, shell_local::ShellLocalError> {
    shell_local::run_streamed(program, args, envs.clone(), ctx.ui).await
}

/// Run the `ansible-local` provisioner `c`.
pub async fn run_local_provisioner(
    c: &AnsibleLocalConfig,
    ctx: &ProvisionContext<'_>,
) -> Result<(), ProvisionError> {
    let comm = ctx.comm("ansible-local")?;
    let staging = c.staging_directory.clone().unwrap_or_else(|| {
        format!(
            "/tmp/packer-provisioner-ansible-local/{}",
            uuid::Uuid::new_v4().simple()
        )
    });
    let q = shell_quote(&staging);
    let exec = |cmd: String| {
        let comm = comm.clone();
        async move {
            let mut out = Captured::default();
            match comm.exec(&cmd, &mut out).await {
                Ok(ExitStatus::Code(0)) => Ok(()),
                Ok(status) => Err(AnsibleError::GuestCommand {
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    command: cmd,
                    status,
                }),
                Err(e) => Err(guest(cmd)(e)),
            }
        }
    };
    ctx.ui.say(&format!("Creating staging directory {staging}"));
    exec(format!("mkdir -p {q}")).await?;
    let up_dir = |local: String, remote: String| {
        let comm = comm.clone();
        async move {
            ctx.ui
                .say(&format!("Uploading directory {local} => {remote}"));
            comm.upload_dir(Path::new(&local), &remote)
                .await
                .map_err(guest(format!("uploading {local}")))
        }
    };
    let up_file = |local: String, remote: String| {
        let comm = comm.clone();
        async move {
            ctx.ui.say(&format!("Uploading {local} => {remote}"));
            let mut f = tokio::fs::File::open(&local)
                .await
                .map_err(self::local(format!("cannot open {local}")))?;
            comm.upload(&mut f, &remote, 0o644)
                .await
                .map_err(guest(format!("uploading {local}")))
        }
    };
    let base = |p: &str| {
        Path::new(p.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if let Some(d) = &c.playbook_dir {
        up_dir(format!("{}/", d.trim_end_matches('/')), staging.clone()).await?;
    }
    let playbooks: Vec<&String> = c.playbook_file.iter().chain(&c.playbook_files).collect();
    for p in &playbooks {
        up_file((*p).clone(), format!("{staging}/{}", base(p))).await?;
    }
    for (opt, sub) in [(&c.group_vars, "group_vars"), (&c.host_vars, "host_vars")] {
        if let Some(d) = opt {
            up_dir(
                format!("{}/", d.trim_end_matches('/')),
                format!("{staging}/{sub}"),
            )
            .await?;
        }
    }
    for r in &c.role_paths {
        up_dir(
            format!("{}/", r.trim_end_matches('/')),
            format!("{staging}/roles/{}", base(r)),
        )
        .await?;
    }
    for r in &c.collection_paths {
        up_dir(
            format!("{}/", r.trim_end_matches('/')),
            format!("{staging}/collections/{}", base(r)),
        )
        .await?;
    }
    let inventory = match &c.inventory_file {
        Some(f) => {
            let remote = format!("{staging}/{}", base(f));
            up_file(f.clone(), remote.clone()).await?;
            remote
        }
        None => {
            let mut text = String::from("127.0.0.1\n");
            for g in &c.inventory_groups {
                text.push_str(&format!("[{g}]\n127.0.0.1\n"));
            }
            let remote = format!("{staging}/packer-provisioner-ansible-local-inventory");
            let mut r: &[u8] = text.as_bytes();
            comm.upload(&mut r, &remote, 0o644)
                .await
                .map_err(guest("uploading the inventory".into()))?;
            remote
        }
    };
    if let Some(g) = &c.galaxy_file {
        let remote = format!("{staging}/{}", base(g));
        up_file(g.clone(), remote.clone()).await?;
        ctx.ui.say("Executing Ansible Galaxy on the guest");
        exec(format!(
            "cd {q} && {} install -r {} -p {}",
            c.galaxy_command,
            shell_quote(&remote),
            shell_quote(&format!("{staging}/roles"))
        ))
        .await?;
    }
    let http = ctx
        .generated
        .get("PackerHTTPAddr")
        .cloned()
        .unwrap_or_default();
    let extra_vars = format!(
        "packer_build_name={} packer_builder_type={} packer_http_addr={http}",
        ctx.build_name, ctx.build_type
    );
    let extra: Vec<String> = c.extra_arguments.clone();
    for p in playbooks {
        let cmd = format!(
            "cd {q} && {} {} --extra-vars {} -c local -i {} {}",
            c.command,
            shell_quote(&base(p)),
            shell_quote(&extra_vars),
            shell_quote(&inventory),
            extra.join(" ")
        );
        ctx.ui.say(&format!("Executing Ansible: {cmd}"));
        let mut out = ctx.ui.output();
        let status = comm
            .exec(&cmd, &mut out)
            .await
            .map_err(guest("running ansible-playbook".into()))?;
        drop(out);
        if !status.success() {
            return Err(AnsibleError::GuestPlaybook(status).into());
        }
    }
    if c.clean_staging_directory {
        ctx.ui.say(&format!("Removing staging directory {staging}"));
        exec(format!("rm -rf {q}")).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_has_the_host_its_groups_and_empty_groups() {
        let c = AnsibleConfig {
            groups: vec!["web".into(), "db".into()],
            empty_groups: vec!["none".into()],
            ..AnsibleConfig::default()
        };
        assert_eq!(
            inventory_text(&c, "127.0.0.1", "2222", "vagrant"),
            "default ansible_host=127.0.0.1 ansible_port=2222 ansible_user=vagrant\n\
             [web]\ndefault\n[db]\ndefault\n[none]\n"
        );
    }

    #[test]
    fn private_files_are_0600_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        private_file(&p, b"secret").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(private_file(&p, b"x").is_err());
    }
}
