//! Wait for the guest's SSH server and log in, with Packer's `ssh_*` options, and remove the
//! temporary key from the guest at the end (`ssh_clear_authorized_keys`). While waiting, watch
//! the VM: if it exits, fail at once with its reason instead of waiting out `ssh_timeout`. A
//! timeout names what to check (boot command, answer file, credentials). The communicator
//! handed to provisioners reconnects by itself when a script reboots the guest.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::communicator::keys::TemporaryKeyPair;
use crate::communicator::reconnect::Reconnecting;
use crate::communicator::ssh::{
    self, expand_home, BastionConfig, ConnectError, SshCommunicator, SshConfig, TerminalPrompter,
};
use crate::communicator::{shell_quote, Captured, Communicator};
use crate::config::common::CommConfig;
use crate::pipeline::Machine;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// Connects the build's communicator.
pub struct Connect {
    comm: CommConfig,
    key: Option<Arc<TemporaryKeyPair>>,
    /// What to suggest when SSH never answers (builder-specific).
    hint: &'static str,
}

impl Connect {
    /// A step connecting with `comm`, also offering `key` when set, while the build's machine
    /// (if it has one) runs.
    pub fn new(comm: CommConfig, key: Option<Arc<TemporaryKeyPair>>, hint: &'static str) -> Self {
        Self { comm, key, hint }
    }

    /// The SSH options for `host:port`, or why they cannot work.
    fn ssh_config(&self, host: &str, port: u16) -> Result<SshConfig, StepError> {
        ssh_config(&self.comm, self.key.as_deref(), host, port)
            .map_err(|e| StepError::with("invalid SSH options", e))
    }

    /// Connect once, failing early if `machine` stops.
    async fn connect(
        &self,
        config: &SshConfig,
        machine: Option<Arc<dyn Machine>>,
    ) -> Result<SshCommunicator, StepError> {
        let console_of = machine.clone();
        let died = async move {
            match machine {
                Some(m) => loop {
                    if let Some(reason) = m.exited() {
                        return reason;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                },
                None => std::future::pending().await,
            }
        };
        let console = || {
            console_of
                .as_ref()
                .and_then(|m| m.console_tail())
                .map(|t| format!("\nthe guest's console ended with:\n{}", indent(&t)))
                .unwrap_or_default()
        };
        tokio::select! {
            r = ssh::connect(config) => r.map_err(|e| match e {
                ConnectError::Timeout { .. } => {
                    StepError::msg(format!("{e}{}\nhint: {}", console(), self.hint))
                }
                e => StepError::with("cannot connect to the guest over SSH", e),
            }),
            reason = died => Err(StepError::msg(format!(
                "the VM stopped before SSH came up: {reason}{}\nhint: {}", console(), self.hint
            ))),
        }
    }
}

/// `text` with each line indented, to set it apart in an error message.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Packer's `ssh_*` options as the SSH communicator takes them. Options kiln does not
/// implement are refused rather than ignored.
fn ssh_config(
    c: &CommConfig,
    key: Option<&TemporaryKeyPair>,
    host: &str,
    port: u16,
) -> Result<SshConfig, ConnectError> {
    for (set, option) in [
        (c.ssh_proxy_host.is_some(), "ssh_proxy_host"),
        (!c.ssh_local_tunnels.is_empty(), "ssh_local_tunnels"),
        (!c.ssh_remote_tunnels.is_empty(), "ssh_remote_tunnels"),
    ] {
        if set {
            return Err(ConnectError::Unsupported(option));
        }
    }
    let files = |f: &Option<String>| f.iter().map(|p| expand_home(p)).collect::<Vec<_>>();
    let secret = |s: &Option<crate::config::weak::Secret>| s.as_ref().map(|s| s.0.clone());
    let bastion = c.ssh_bastion_host.as_ref().map(|h| {
        // Packer: the bastion falls back to the guest's key file and certificate.
        let (key_file, cert) = match &c.ssh_bastion_private_key_file {
            Some(f) => (Some(f.clone()), c.ssh_bastion_certificate_file.clone()),
            None => (
                c.ssh_private_key_file.clone(),
                c.ssh_certificate_file.clone(),
            ),
        };
        BastionConfig {
            host: h.clone(),
            port: if c.ssh_bastion_port == 0 {
                22
            } else {
                c.ssh_bastion_port
            },
            username: c.ssh_bastion_username.clone().unwrap_or_default(),
            password: secret(&c.ssh_bastion_password),
            private_key_files: files(&key_file),
            certificate_file: cert.map(|p| expand_home(&p)),
            agent_auth: c.ssh_bastion_agent_auth,
            interactive: c
                .ssh_bastion_interactive
                .then(|| Arc::new(TerminalPrompter) as Arc<dyn ssh::Prompter>),
        }
    });
    Ok(SshConfig {
        host: host.to_owned(),
        port,
        username: c.ssh_username.clone().unwrap_or_default(),
        password: secret(&c.ssh_password),
        private_key_files: files(&c.ssh_private_key_file),
        private_keys: key.iter().map(|k| k.private_key()).collect(),
        certificate_file: c.ssh_certificate_file.as_deref().map(expand_home),
        agent_auth: c.ssh_agent_auth,
        agent_forwarding: !c.ssh_disable_agent_forwarding,
        timeout: c.ssh_timeout(),
        handshake_attempts: c.ssh_handshake_attempts(),
        keep_alive_interval: c.ssh_keep_alive_interval(),
        read_write_timeout: Some(c.ssh_read_write_timeout.clamped()).filter(|d| !d.is_zero()),
        pty: c.ssh_pty,
        file_transfer: c.ssh_file_transfer_method.parse()?,
        ciphers: c.ssh_ciphers.clone(),
        key_exchange_algorithms: c.ssh_key_exchange_algorithms.clone(),
        bastion,
        ..SshConfig::default()
    })
}

#[async_trait]
impl Step for Connect {
    fn name(&self) -> &'static str {
        "connect"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if self.comm.communicator == "none" {
            ctx.ui.say("Communicator is \"none\": skipping SSH");
            return Ok(());
        }
        if self.comm.communicator != "ssh" {
            return Err(StepError::msg(format!(
                "communicator {:?} is not supported by kiln yet: use ssh or none",
                self.comm.communicator
            )));
        }
        let (host, port) = ctx
            .ssh_address
            .clone()
            .ok_or_else(|| StepError::msg("no SSH address for the guest (ssh_host is not set)"))?;
        let config = self.ssh_config(&host, port)?;
        if let Some(b) = &config.bastion {
            ctx.ui.say(&format!(
                "Using the bastion host {}:{} to reach SSH on {host}:{port}",
                b.host, b.port
            ));
        }
        ctx.ui.say("Waiting for SSH to become available...");
        let mut comm = self.connect(&config, ctx.machine.clone()).await?;
        if let Some(p) = self
            .comm
            .pause_before_connecting
            .filter(|p| !p.clamped().is_zero())
        {
            // Packer: connect once to know the guest is up, then pause, then connect again.
            ctx.ui.say(&format!(
                "Connected to SSH; pausing {p} before connecting again (pause_before_connecting)..."
            ));
            comm.disconnect().await;
            tokio::select! {
                () = tokio::time::sleep(p.clamped()) => {}
                () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
            }
            comm = self.connect(&config, ctx.machine.clone()).await?;
        }
        ctx.ui.say(&format!(
            "Connected to SSH! (host key {})",
            comm.host_key_fingerprint()
        ));
        ctx.generated.insert("Host".into(), host);
        ctx.generated.insert("Port".into(), port.to_string());
        ctx.generated.insert("User".into(), config.username.clone());
        if let Some(pw) = &config.password {
            ctx.ui.shared().add_secret(pw);
            ctx.generated.insert("Password".into(), pw.clone());
        }
        // Packer's build.SSHPrivateKey: the key the `ansible` provisioner hands on.
        let private = match (&self.comm.ssh_private_key_file, &self.key) {
            (Some(f), _) => std::fs::read_to_string(f).ok(),
            (None, Some(k)) => k
                .private_key()
                .to_openssh(russh::keys::ssh_key::LineEnding::LF)
                .ok()
                .map(|pem| pem.to_string()),
            (None, None) => None,
        };
        if let Some(pem) = private {
            ctx.ui.shared().add_secret(&pem);
            for line in pem.lines().filter(|l| !l.starts_with("-----")) {
                ctx.ui.shared().add_secret(line);
            }
            ctx.generated.insert("SSHPrivateKey".into(), pem);
        }
        if let Some(pw) = config.bastion.as_ref().and_then(|b| b.password.as_ref()) {
            ctx.ui.shared().add_secret(pw);
        }
        let ui = ctx.ui.clone();
        let machine = ctx.machine.clone();
        let reconnecting = Reconnecting::new(comm, config)
            .with_notify(Arc::new(move |text| ui.say(text)))
            .with_gone_check(Arc::new(move || {
                machine
                    .as_ref()
                    .and_then(|m| m.exited())
                    .map(|r| format!("the VM stopped: {r}"))
            }));
        ctx.communicator = Some(Arc::new(reconnecting) as Arc<dyn Communicator>);
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        ctx.communicator = None;
        Ok(())
    }
}

/// Offer the build's temporary SSH public key to the templates of later steps
/// (`{{ .SSHPublicKey }}` in a boot command, `build.SSHPublicKey` in provisioners).
pub struct PublishKey {
    key: Option<Arc<TemporaryKeyPair>>,
}

impl PublishKey {
    /// The step for `key` (nothing to do without one).
    pub fn new(key: Option<Arc<TemporaryKeyPair>>) -> Self {
        Self { key }
    }
}

#[async_trait]
impl Step for PublishKey {
    fn name(&self) -> &'static str {
        "publish key"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        if let Some(k) = &self.key {
            ctx.generated
                .insert("SSHPublicKey".into(), k.public_openssh().to_owned());
        }
        Ok(())
    }
}

/// Packer's `ssh_clear_authorized_keys`: after provisioning, remove the temporary key's lines
/// (found by its comment, the key pair name) from the login user's and root's authorized_keys.
/// Failures only warn: the key is useless once the build ends anyway.
pub struct ClearAuthorizedKeys {
    enabled: bool,
    key: Option<Arc<TemporaryKeyPair>>,
}

impl ClearAuthorizedKeys {
    /// The step for a build with `comm` and temporary `key`.
    pub fn new(comm: &CommConfig, key: Option<Arc<TemporaryKeyPair>>) -> Self {
        Self {
            enabled: comm.ssh_clear_authorized_keys
                && comm.communicator == "ssh"
                && comm.ssh_private_key_file.is_none(),
            key,
        }
    }

    /// The commands that remove lines ending with ` <name>`.
    fn commands(name: &str) -> [String; 2] {
        // A sed address between slashes: escape what sed's basic regex treats specially.
        let mut pattern = String::from(" ");
        for ch in name.chars() {
            if "\\/.*[]^$".contains(ch) {
                pattern.push('\\');
            }
            pattern.push(ch);
        }
        pattern.push('$');
        let script = shell_quote(&format!("/{pattern}/d"));
        [
            format!("sed -i.bak {script} ~/.ssh/authorized_keys; rm -f ~/.ssh/authorized_keys.bak"),
            format!("sudo sed -i.bak {script} /root/.ssh/authorized_keys; sudo rm -f /root/.ssh/authorized_keys.bak"),
        ]
    }
}

#[async_trait]
impl Step for ClearAuthorizedKeys {
    fn name(&self) -> &'static str {
        "clear authorized keys"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let (Some(key), Some(comm), true) = (&self.key, &ctx.communicator, self.enabled) else {
            return Ok(());
        };
        ctx.ui
            .say("Trying to remove ephemeral keys from authorized_keys files");
        for cmd in Self::commands(key.comment()) {
            let mut out = Captured::default();
            match comm.exec(&cmd, &mut out).await {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::info!(
                    "removing the temporary key ended with {status}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => tracing::info!("removing the temporary key failed: {e}"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::communicator::ssh::TransferMethod;
    use crate::communicator::testing::FakeCommunicator;
    use crate::pipeline::context::testing::context;
    use crate::pipeline::machine::testing::FakeMachine;

    #[tokio::test]
    async fn communicator_none_connects_nothing_and_other_kinds_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let none = CommConfig {
            communicator: "none".into(),
            ..CommConfig::default()
        };
        Connect::new(none, None, "hint")
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.communicator.is_none());
        let winrm = CommConfig {
            communicator: "winrm".into(),
            ..CommConfig::default()
        };
        let e = Connect::new(winrm, None, "hint")
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("\"winrm\" is not supported"), "{e}");
    }

    #[tokio::test]
    async fn no_address_is_an_error_naming_ssh_host() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let e = Connect::new(CommConfig::default(), None, "hint")
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(e.contains("ssh_host"), "{e}");
    }

    #[tokio::test]
    async fn a_vm_that_dies_while_waiting_fails_at_once_with_its_reason_and_console() {
        let t = tempfile::tempdir().unwrap();
        let serial = t.path().join("serial.log");
        std::fs::write(&serial, "Booting\nKernel panic - not syncing\n").unwrap();
        let mut ctx = context(t.path());
        let m = Arc::new(FakeMachine {
            serial: Some(serial),
            ..FakeMachine::default()
        });
        *m.exited.lock().unwrap() = Some("QEMU exited with signal 6".into());
        ctx.machine = Some(m);
        // A port nobody listens on: the connection attempt never succeeds.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        ctx.ssh_address = Some(("127.0.0.1".into(), port));
        let comm = CommConfig {
            ssh_username: Some("u".into()),
            ssh_password: Some(crate::config::weak::Secret("p".into())),
            ..CommConfig::default()
        };
        let e = Connect::new(comm, None, "check the answer file")
            .run(&mut ctx)
            .await
            .unwrap_err()
            .report();
        assert!(
            e.contains("the VM stopped before SSH came up: QEMU exited with signal 6"),
            "{e}"
        );
        assert!(e.contains("Kernel panic"), "{e}");
        assert!(e.contains("hint: check the answer file"), "{e}");
    }

    #[tokio::test]
    async fn the_temporary_key_is_published_and_cleared_from_the_guest() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx = context(t.path());
        let key = Arc::new(TemporaryKeyPair::generate_ed25519("kiln_x").unwrap());
        PublishKey::new(Some(key.clone()))
            .run(&mut ctx)
            .await
            .unwrap();
        assert!(ctx.generated["SSHPublicKey"].starts_with("ssh-ed25519 "));
        let comm = Arc::new(FakeCommunicator::default());
        ctx.communicator = Some(comm.clone());
        let cfg = CommConfig {
            ssh_clear_authorized_keys: true,
            ..CommConfig::default()
        };
        ClearAuthorizedKeys::new(&cfg, Some(key))
            .run(&mut ctx)
            .await
            .unwrap();
        let cmds = comm.commands();
        assert_eq!(cmds.len(), 2, "{cmds:?}");
        assert!(cmds[0].contains("kiln_x") && cmds[1].contains("/root/.ssh/authorized_keys"));
    }

    #[test]
    fn packer_options_map_to_the_ssh_config() {
        let comm: CommConfig = serde_json::from_value(serde_json::json!({
            "ssh_username": "u", "ssh_password": "p", "ssh_file_transfer_method": "sftp",
            "ssh_disable_agent_forwarding": true, "ssh_keep_alive_interval": "-1s",
            "ssh_read_write_timeout": "2m", "ssh_pty": true,
            "ssh_bastion_host": "jump", "ssh_bastion_username": "j",
            "ssh_private_key_file": "~/id", "ssh_timeout": "1m"
        }))
        .unwrap();
        let c = ssh_config(&comm, None, "127.0.0.1", 2222).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 2222));
        assert_eq!(c.file_transfer, TransferMethod::Sftp);
        assert!(!c.agent_forwarding);
        assert_eq!(c.keep_alive_interval, None);
        assert_eq!(c.read_write_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.timeout, Some(Duration::from_secs(60)));
        assert_eq!(c.handshake_attempts, 0);
        assert!(c.pty);
        let b = c.bastion.unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.username.as_str()),
            ("jump", 22, "j")
        );
        // The bastion falls back to the guest's key file, as in Packer.
        assert_eq!(b.private_key_files, c.private_key_files);
        assert!(!c.private_key_files[0].starts_with("~"));

        let bad: CommConfig =
            serde_json::from_value(serde_json::json!({"ssh_file_transfer_method": "rsync"}))
                .unwrap();
        assert!(ssh_config(&bad, None, "h", 22).is_err());
        let proxy: CommConfig =
            serde_json::from_value(serde_json::json!({"ssh_proxy_host": "socks"})).unwrap();
        let err = ssh_config(&proxy, None, "h", 22).unwrap_err();
        assert!(
            err.to_string().contains("ssh_proxy_host is not supported"),
            "{err}"
        );
    }

    #[test]
    fn clearing_keys_matches_the_comment_literally() {
        let [user, root] = ClearAuthorizedKeys::commands("kiln_a.b/c");
        assert_eq!(
            user,
            r"sed -i.bak '/ kiln_a\.b\/c$/d' ~/.ssh/authorized_keys; rm -f ~/.ssh/authorized_keys.bak"
        );
        assert!(
            root.starts_with("sudo sed -i.bak '/ kiln_a\\.b\\/c$/d' /root/.ssh/authorized_keys")
        );
    }

    #[test]
    fn clearing_keys_removes_only_the_temporary_key() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        let keys = home.path().join(".ssh/authorized_keys");
        std::fs::write(
            &keys,
            "ssh-ed25519 AAAA mine\nssh-rsa BBBB kiln_x.y\nssh-rsa CCCC kiln_xzy\n",
        )
        .unwrap();
        let [user, _] = ClearAuthorizedKeys::commands("kiln_x.y");
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(&user)
            .env("HOME", home.path())
            .status()
            .unwrap();
        assert!(ok.success());
        assert_eq!(
            std::fs::read_to_string(&keys).unwrap(),
            "ssh-ed25519 AAAA mine\nssh-rsa CCCC kiln_xzy\n"
        );
        assert!(!home.path().join(".ssh/authorized_keys.bak").exists());
    }
}
