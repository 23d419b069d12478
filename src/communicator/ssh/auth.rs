//! Logging in: the credentials of the guest (or of the bastion) read once from the options, and
//! tried in Packer's order on each connection: agent keys, key files (with their certificate)
//! and in-memory keys, the password (`password`, then `keyboard-interactive` answered with it),
//! and for a bastion keyboard-interactive prompts answered by a person.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{Handle, KeyboardInteractiveAuthResponse};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Certificate, PrivateKey, PrivateKeyWithHashAlg};

use super::handler::{Attempt, Client};
use super::{expand_home_path, BastionConfig, ConnectError, SshConfig};

/// Answers keyboard-interactive prompts (`ssh_bastion_interactive`).
pub trait Prompter: Send + Sync {
    /// One answer per prompt; `echo` says whether the answer may be shown as typed.
    fn answer(&self, instructions: &str, prompts: &[(String, bool)]) -> io::Result<Vec<String>>;
}

/// Asks on the controlling terminal, as Packer does: the prompt on `/dev/tty`, the answer read
/// from it, not echoed when the server says the answer is secret.
#[derive(Debug, Default, Clone, Copy)]
pub struct TerminalPrompter;

impl Prompter for TerminalPrompter {
    fn answer(&self, instructions: &str, prompts: &[(String, bool)]) -> io::Result<Vec<String>> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")?;
        let mut out = tty.try_clone()?;
        let mut input = io::BufReader::new(tty.try_clone()?);
        if !instructions.is_empty() {
            writeln!(out, "{instructions}")?;
        }
        let mut answers = Vec::with_capacity(prompts.len());
        for (prompt, echo) in prompts {
            write!(out, "{prompt}")?;
            out.flush()?;
            let saved = tcgetattr(&tty)?;
            if !echo {
                let mut quiet = saved.clone();
                quiet.local_modes.remove(LocalModes::ECHO);
                tcsetattr(&tty, OptionalActions::Now, &quiet)?;
            }
            let mut line = String::new();
            let read = input.read_line(&mut line);
            if !echo {
                tcsetattr(&tty, OptionalActions::Now, &saved)?;
                writeln!(out)?;
            }
            read?;
            answers.push(line.trim_end_matches(['\r', '\n']).to_owned());
        }
        Ok(answers)
    }
}

/// A private key with the certificate that goes with it, if any.
struct Key {
    key: Arc<PrivateKey>,
    cert: Option<Certificate>,
}

/// What one side (guest or bastion) is logged in with.
pub(super) struct Credentials {
    user: String,
    /// The agent's socket, with `*_agent_auth`.
    agent: Option<PathBuf>,
    keys: Vec<Key>,
    password: Option<String>,
    prompter: Option<Arc<dyn Prompter>>,
}

impl Credentials {
    /// The guest's credentials: key files read now, so a bad one fails before any attempt.
    pub(super) fn target(c: &SshConfig) -> Result<Self, ConnectError> {
        if c.certificate_file.is_some() && c.private_key_files.is_empty() {
            return Err(ConnectError::CertificateWithoutKey("ssh_certificate_file"));
        }
        let mut keys = load_keys(
            "ssh_private_key_file",
            &c.private_key_files,
            "ssh_certificate_file",
            c.certificate_file.as_deref(),
        )?;
        for key in &c.private_keys {
            // The build's key may be the key file's own (for {{ .SSHPublicKey }}): offer it once.
            if !keys.iter().any(|k| k.key.public_key() == key.public_key()) {
                keys.push(Key {
                    key: Arc::clone(key),
                    cert: None,
                });
            }
        }
        let agent = match c.agent_auth {
            true => Some(check_agent("ssh_agent_auth", c.agent_socket.as_deref())?),
            false => None,
        };
        if keys.is_empty() && c.password.is_none() && agent.is_none() {
            return Err(ConnectError::NoCredentials);
        }
        Ok(Self {
            user: c.username.clone(),
            agent,
            keys,
            password: c.password.clone(),
            prompter: None,
        })
    }

    /// The bastion's credentials.
    pub(super) fn bastion(b: &BastionConfig, agent: Option<&Path>) -> Result<Self, ConnectError> {
        if b.certificate_file.is_some() && b.private_key_files.is_empty() {
            return Err(ConnectError::CertificateWithoutKey(
                "ssh_bastion_certificate_file",
            ));
        }
        if b.password.is_none()
            && b.private_key_files.is_empty()
            && !b.agent_auth
            && b.interactive.is_none()
        {
            return Err(ConnectError::NoBastionCredentials);
        }
        let keys = load_keys(
            "ssh_bastion_private_key_file",
            &b.private_key_files,
            "ssh_bastion_certificate_file",
            b.certificate_file.as_deref(),
        )?;
        let agent = match b.agent_auth {
            true => Some(check_agent("ssh_bastion_agent_auth", agent)?),
            false => None,
        };
        Ok(Self {
            user: b.username.clone(),
            agent,
            keys,
            password: b.password.clone(),
            prompter: b.interactive.clone(),
        })
    }

    /// The methods offered, for an error message (no secrets).
    pub(super) fn methods(&self) -> String {
        let mut m = Vec::new();
        if self.agent.is_some() {
            m.push("publickey (agent)".to_owned());
        }
        for k in &self.keys {
            let cert = if k.cert.is_some() { " certificate" } else { "" };
            m.push(format!("publickey {}{cert}", k.key.algorithm()));
        }
        if self.password.is_some() {
            m.push("password, keyboard-interactive".to_owned());
        }
        if self.prompter.is_some() {
            m.push("keyboard-interactive (prompted)".to_owned());
        }
        m.join(", ")
    }

    /// Try every method on a fresh connection; `Err(Attempt::Auth)` when all were rejected.
    pub(super) async fn login(&self, handle: &mut Handle<Client>) -> Result<(), Attempt> {
        let user = self.user.as_str();
        let handshake = |e: russh::Error| Attempt::Handshake(e.to_string());
        if let Some(prompter) = &self.prompter {
            if keyboard_interactive(handle, user, |instructions, prompts| {
                prompter.answer(instructions, prompts)
            })
            .await?
            {
                return Ok(());
            }
        }
        if let Some(socket) = &self.agent {
            if agent_login(handle, user, socket).await? {
                return Ok(());
            }
        }
        for k in &self.keys {
            let res = match &k.cert {
                Some(cert) => handle
                    .authenticate_openssh_cert(user, Arc::clone(&k.key), cert.clone())
                    .await
                    .map_err(handshake)?,
                None => {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(handshake)?
                        .flatten();
                    let signer = PrivateKeyWithHashAlg::new(Arc::clone(&k.key), hash);
                    handle
                        .authenticate_publickey(user, signer)
                        .await
                        .map_err(handshake)?
                }
            };
            if res.success() {
                return Ok(());
            }
        }
        if let Some(password) = &self.password {
            let res = handle
                .authenticate_password(user, password.as_str())
                .await
                .map_err(handshake)?;
            if res.success() {
                return Ok(());
            }
            let answer = |_: &str, prompts: &[(String, bool)]| {
                Ok(prompts.iter().map(|_| password.clone()).collect())
            };
            if keyboard_interactive(handle, user, answer).await? {
                return Ok(());
            }
        }
        Err(Attempt::Auth)
    }
}

fn load_keys(
    option: &'static str,
    files: &[std::path::PathBuf],
    cert_option: &'static str,
    cert: Option<&Path>,
) -> Result<Vec<Key>, ConnectError> {
    let cert = match cert {
        Some(path) => {
            let path = expand_home_path(path);
            let c = russh::keys::load_openssh_certificate(&path).map_err(|e| {
                ConnectError::Certificate {
                    option: cert_option,
                    path: path.clone(),
                    why: format!("it must be a readable OpenSSH certificate ({e})"),
                }
            })?;
            Some((path, c))
        }
        None => None,
    };
    let mut keys = Vec::new();
    for file in files {
        let path = expand_home_path(file);
        let key =
            russh::keys::load_secret_key(&path, None).map_err(|source| ConnectError::KeyFile {
                option,
                path: path.clone(),
                source,
            })?;
        let cert = match &cert {
            Some((cert_path, c)) => {
                if c.public_key() != key.public_key().key_data() {
                    return Err(ConnectError::Certificate {
                        option: cert_option,
                        path: cert_path.clone(),
                        why: format!("it certifies another key than {}", path.display()),
                    });
                }
                Some(c.clone())
            }
            None => None,
        };
        keys.push(Key {
            key: Arc::new(key),
            cert,
        });
    }
    Ok(keys)
}

fn check_agent(option: &'static str, socket: Option<&Path>) -> Result<PathBuf, ConnectError> {
    match socket {
        Some(sock) if sock.exists() => Ok(sock.to_path_buf()),
        Some(sock) => Err(ConnectError::NoAgent {
            option,
            why: format!("SSH_AUTH_SOCK={} does not exist", sock.display()),
        }),
        None => Err(ConnectError::NoAgent {
            option,
            why: "SSH_AUTH_SOCK is not set".into(),
        }),
    }
}

/// Log in with each identity the local agent holds.
async fn agent_login(
    handle: &mut Handle<Client>,
    user: &str,
    socket: &Path,
) -> Result<bool, Attempt> {
    let mut agent = match AgentClient::connect_uds(socket).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("cannot reach the SSH agent: {e}");
            return Ok(false);
        }
    };
    if let Some(binding) = handle.agent_session_binding() {
        // Only OpenSSH agents know session binding; others refuse the extension, which is fine.
        let _ = agent.bind_session(binding, false).await;
    }
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!("the SSH agent did not list its keys: {e}");
            return Ok(false);
        }
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| Attempt::Handshake(e.to_string()))?
        .flatten();
    for identity in identities {
        let res = match identity {
            AgentIdentity::PublicKey { key, .. } => {
                let hash = if key.algorithm().is_rsa() {
                    rsa_hash
                } else {
                    None
                };
                handle
                    .authenticate_publickey_with(user, key, hash, &mut agent)
                    .await
            }
            AgentIdentity::Certificate { certificate, .. } => {
                handle
                    .authenticate_certificate_with(user, certificate, rsa_hash, &mut agent)
                    .await
            }
        };
        match res {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => {}
            Err(e) => tracing::debug!("the SSH agent could not sign: {e}"),
        }
    }
    Ok(false)
}

/// Run a keyboard-interactive exchange, answering each round with `answer`.
async fn keyboard_interactive(
    handle: &mut Handle<Client>,
    user: &str,
    answer: impl Fn(&str, &[(String, bool)]) -> io::Result<Vec<String>>,
) -> Result<bool, Attempt> {
    let handshake = |e: russh::Error| Attempt::Handshake(e.to_string());
    let mut reply = handle
        .authenticate_keyboard_interactive_start(user, None::<String>)
        .await
        .map_err(handshake)?;
    // A server could ask forever; a few rounds cover real PAM conversations.
    for _ in 0..5 {
        match reply {
            KeyboardInteractiveAuthResponse::Success => return Ok(true),
            KeyboardInteractiveAuthResponse::Failure { .. } => return Ok(false),
            KeyboardInteractiveAuthResponse::InfoRequest {
                instructions,
                prompts,
                ..
            } => {
                let prompts: Vec<(String, bool)> =
                    prompts.into_iter().map(|p| (p.prompt, p.echo)).collect();
                let answers = if prompts.is_empty() {
                    Vec::new()
                } else {
                    answer(&instructions, &prompts).map_err(|e| {
                        Attempt::Handshake(format!("cannot answer the login prompt: {e}"))
                    })?
                };
                reply = handle
                    .authenticate_keyboard_interactive_respond(answers)
                    .await
                    .map_err(handshake)?;
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_without_key_and_unreadable_files_are_named() {
        let c = SshConfig {
            username: "u".into(),
            certificate_file: Some("/nonexistent-cert".into()),
            ..SshConfig::default()
        };
        let err = Credentials::target(&c).err().unwrap();
        assert!(err
            .to_string()
            .contains("ssh_certificate_file needs a private key"));

        let c = SshConfig {
            username: "u".into(),
            private_key_files: vec!["/nonexistent-key".into()],
            ..SshConfig::default()
        };
        let err = Credentials::target(&c).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("ssh_private_key_file /nonexistent-key"),
            "{msg}"
        );
        assert!(msg.contains("readable"), "{msg}");
    }

    #[test]
    fn methods_name_what_is_offered_without_secrets() {
        let c = SshConfig {
            username: "u".into(),
            password: Some("pw-secret".into()),
            private_keys: vec![
                crate::communicator::keys::TemporaryKeyPair::generate_ed25519("t")
                    .unwrap()
                    .private_key(),
            ],
            ..SshConfig::default()
        };
        let m = Credentials::target(&c).unwrap().methods();
        assert_eq!(m, "publickey ssh-ed25519, password, keyboard-interactive");
        assert!(!m.contains("pw-secret"));
    }
}
