//! The build's SSH key pair, as Packer's `StepSSHKeyGen` makes it: when the template names no
//! `ssh_private_key_file` (and no `ssh_agent_auth`), a temporary pair of
//! `temporary_key_pair_type` (`rsa` by default, 4096 bits; `ecdsa` 521 bits by default;
//! `ed25519`) is generated for the build; with a key file, the pair is read from it. Either way
//! the public half goes to the guest through `{{ .SSHPublicKey }}` / `build.SSHPublicKey`, and
//! the private half stays in memory and is never logged. `dsa` is refused: OpenSSH no longer
//! accepts DSA keys, so such a key could not log in to a current guest.
//!
//! A key given inline (`ssh_private_key`, with `ssh_public_key`; Packer's steps set these and
//! its templates may too) is what Packer makes of it: QEMU and VMware builds overwrite it with
//! their pair, so it is ignored there; VirtualBox builds skip their key step when they log in
//! with `ssh_password` or `ssh_agent_auth`, so the inline key is then offered at login and its
//! public half is `{{ .SSHPublicKey }}` ([`TemporaryKeyPair::for_virtualbox_build`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use russh::keys::ssh_key::private::{EcdsaKeypair, KeypairData, RsaKeypair};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};

use crate::config::common::CommConfig;

/// Why a key pair could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `temporary_key_pair_type` names no supported algorithm.
    #[error("temporary_key_pair_type {0:?} is not supported: use rsa (the default), ecdsa or ed25519{hint}", hint = if .0 == "dsa" { " (OpenSSH no longer accepts DSA keys)" } else { "" })]
    UnknownType(String),
    /// `temporary_key_pair_bits` does not fit the type.
    #[error("temporary_key_pair_bits {bits} is invalid for {kind} keys: {rule}")]
    Bits {
        /// The key type.
        kind: &'static str,
        /// The bits asked for.
        bits: u32,
        /// What is allowed.
        rule: &'static str,
    },
    /// Generation or encoding failed (this indicates a broken crypto backend).
    #[error("cannot generate a temporary {0} key pair")]
    Generate(&'static str, #[source] russh::keys::ssh_key::Error),
    /// `ssh_private_key` does not hold a key (the key itself is never in the message).
    #[error("cannot use ssh_private_key: it must be an unencrypted private key (OpenSSH or PEM)")]
    Inline(#[source] russh::keys::Error),
    /// `ssh_private_key_file` could not be read or parsed.
    #[error("cannot use ssh_private_key_file {0}: it must be an unencrypted private key (OpenSSH or PEM)")]
    File(String, #[source] russh::keys::Error),
    /// The private key could not be written.
    #[error("cannot write the private key to {0}")]
    Write(String, #[source] std::io::Error),
}

/// A key pair that lives for one build.
#[derive(Clone)]
pub struct TemporaryKeyPair {
    private: Arc<PrivateKey>,
    public_openssh: String,
}

impl TemporaryKeyPair {
    /// Make a fresh pair of `kind` (`rsa`, `ecdsa`, `ed25519`; empty means `rsa`, as in Packer)
    /// with `bits` (Packer's rules: rsa ≥ 1024, default 4096; ecdsa 256, 384 or 521, default
    /// 521; ignored for ed25519). `comment` ends up in the guest's authorized_keys, so the key can
    /// be found and removed later (`ssh_clear_authorized_keys`).
    pub fn generate(kind: &str, bits: Option<u32>, comment: &str) -> Result<Self, KeyError> {
        let bits = bits.filter(|b| *b != 0);
        let mut rng = russh::keys::key::safe_rng();
        let data = match kind.to_ascii_lowercase().as_str() {
            "" | "rsa" => {
                let bits = bits.unwrap_or(4096);
                if bits < 1024 {
                    return Err(KeyError::Bits {
                        kind: "rsa",
                        bits,
                        rule: "at least 1024",
                    });
                }
                let pair = RsaKeypair::random(&mut rng, bits as usize)
                    .map_err(|e| KeyError::Generate("rsa", e))?;
                KeypairData::from(pair)
            }
            "ecdsa" => {
                let curve = match bits.unwrap_or(521) {
                    256 => EcdsaCurve::NistP256,
                    384 => EcdsaCurve::NistP384,
                    521 => EcdsaCurve::NistP521,
                    bits => {
                        return Err(KeyError::Bits {
                            kind: "ecdsa",
                            bits,
                            rule: "one of 256, 384 or 521",
                        })
                    }
                };
                let pair = EcdsaKeypair::random(&mut rng, curve)
                    .map_err(|e| KeyError::Generate("ecdsa", e))?;
                KeypairData::from(pair)
            }
            "ed25519" => {
                let key = PrivateKey::random(&mut rng, Algorithm::Ed25519)
                    .map_err(|e| KeyError::Generate("ed25519", e))?;
                key.key_data().clone()
            }
            _ => return Err(KeyError::UnknownType(kind.to_owned())),
        };
        let private = PrivateKey::new(data, comment).map_err(|e| KeyError::Generate("ssh", e))?;
        Self::from_private(private)
    }

    /// A fresh ed25519 pair (quick to make; tests and tools use it).
    pub fn generate_ed25519(comment: &str) -> Result<Self, KeyError> {
        Self::generate("ed25519", None, comment)
    }

    /// The pair of an existing private key file (`ssh_private_key_file`), so its public half can
    /// be offered to the guest as `{{ .SSHPublicKey }}` as Packer does.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let private = russh::keys::load_secret_key(path, None)
            .map_err(|e| KeyError::File(path.display().to_string(), e))?;
        Self::from_private(private).map_err(|e| match e {
            KeyError::Generate(_, source) => {
                KeyError::File(path.display().to_string(), russh::keys::Error::from(source))
            }
            other => other,
        })
    }

    /// The key pair a build with `comm` uses: none with `ssh_agent_auth` or
    /// `communicator = "none"`, the key file's with `ssh_private_key_file`, else a fresh
    /// temporary pair named `temporary_key_pair_name` or `default_name`. An inline
    /// `ssh_private_key` is not used: Packer's `StepSSHKeyGen` overwrites it.
    pub fn for_build(comm: &CommConfig, default_name: &str) -> Result<Option<Self>, KeyError> {
        if comm.communicator != "ssh" || comm.ssh_agent_auth {
            return Ok(None);
        }
        if let Some(file) = &comm.ssh_private_key_file {
            return Self::load(&crate::communicator::ssh::expand_home(file)).map(Some);
        }
        let name = comm
            .temporary_key_pair_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(default_name);
        Self::generate(
            &comm.temporary_key_pair_type,
            comm.temporary_key_pair_bits,
            name,
        )
        .map(Some)
    }

    /// The key pair of a VirtualBox build: as [`TemporaryKeyPair::for_build`], except that
    /// with `ssh_password` or `ssh_agent_auth` an inline `ssh_private_key` is the pair (Packer's
    /// VirtualBox key step does not run then, so the template's key stays), its public half
    /// `ssh_public_key` when set.
    pub fn for_virtualbox_build(
        comm: &CommConfig,
        default_name: &str,
    ) -> Result<Option<Self>, KeyError> {
        let step_skipped = comm.ssh_password.is_some() || comm.ssh_agent_auth;
        match &comm.ssh_private_key {
            Some(key) if comm.communicator == "ssh" && step_skipped => {
                let private =
                    russh::keys::decode_secret_key(key, None).map_err(KeyError::Inline)?;
                let mut pair = Self::from_private(private)?;
                if let Some(public) = comm.ssh_public_key.as_deref().map(str::trim) {
                    if !public.is_empty() {
                        public.clone_into(&mut pair.public_openssh);
                    }
                }
                Ok(Some(pair))
            }
            _ => Self::for_build(comm, default_name),
        }
    }

    fn from_private(private: PrivateKey) -> Result<Self, KeyError> {
        let public_openssh = private
            .public_key()
            .to_openssh()
            .map_err(|e| KeyError::Generate("ssh", e))?;
        Ok(Self {
            private: Arc::new(private),
            public_openssh,
        })
    }

    /// Write the private key to `path` in OpenSSH's format, readable by its owner only (the
    /// layer cache keeps a temporary key with the guest that authorizes it).
    pub fn write_private(&self, path: &Path) -> Result<(), KeyError> {
        let text = self
            .private
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| KeyError::Generate("ssh", e))?;
        crate::child::private_file(path)
            .and_then(|()| std::fs::write(path, text.as_bytes()))
            .map_err(|e| KeyError::Write(path.display().to_string(), e))
    }

    /// The public key as one authorized_keys line: `ssh-ed25519 AAAA… comment`.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
    }

    /// The comment the public key carries (the key pair's name).
    pub fn comment(&self) -> &str {
        self.private.comment().as_str_lossy()
    }

    /// SHA256 fingerprint of the public key, safe to log.
    pub fn fingerprint(&self) -> String {
        self.private.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The private key, for [`super::ssh::SshConfig::private_keys`].
    pub fn private_key(&self) -> Arc<PrivateKey> {
        Arc::clone(&self.private)
    }
}

impl fmt::Debug for TemporaryKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemporaryKeyPair")
            .field("public", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_is_one_openssh_line_with_the_comment() {
        let pair = TemporaryKeyPair::generate_ed25519("kiln qemu.debian").unwrap();
        let line = pair.public_openssh();
        assert!(line.starts_with("ssh-ed25519 AAAA"), "{line}");
        assert!(line.ends_with(" kiln qemu.debian"), "{line}");
        assert!(!line.contains('\n'));
        assert!(pair.fingerprint().starts_with("SHA256:"));
        let other = TemporaryKeyPair::generate_ed25519("x").unwrap();
        assert_ne!(pair.fingerprint(), other.fingerprint());
        assert!(!format!("{pair:?}").contains("PRIVATE"));
    }

    #[test]
    fn types_and_bits_follow_packer() {
        let ecdsa = TemporaryKeyPair::generate("ecdsa", None, "k").unwrap();
        assert!(ecdsa.public_openssh().starts_with("ecdsa-sha2-nistp521 "));
        let ecdsa = TemporaryKeyPair::generate("ECDSA", Some(256), "k").unwrap();
        assert!(ecdsa.public_openssh().starts_with("ecdsa-sha2-nistp256 "));
        let rsa = TemporaryKeyPair::generate("rsa", Some(1024), "k").unwrap();
        assert!(rsa.public_openssh().starts_with("ssh-rsa "));
        // bits are ignored for ed25519, as in Packer.
        assert!(TemporaryKeyPair::generate("ed25519", Some(7), "k").is_ok());

        let err = TemporaryKeyPair::generate("ecdsa", Some(512), "k").unwrap_err();
        assert!(err.to_string().contains("256, 384 or 521"), "{err}");
        let err = TemporaryKeyPair::generate("rsa", Some(512), "k").unwrap_err();
        assert!(err.to_string().contains("at least 1024"), "{err}");
        let err = TemporaryKeyPair::generate("dsa", None, "k").unwrap_err();
        assert!(err.to_string().contains("no longer accepts DSA"), "{err}");
        let err = TemporaryKeyPair::generate("rsa4096", None, "k").unwrap_err();
        assert!(err
            .to_string()
            .contains("rsa (the default), ecdsa or ed25519"));
    }

    #[test]
    fn the_build_key_follows_the_communicator_options() {
        let mut comm = CommConfig {
            temporary_key_pair_type: "ed25519".into(),
            ..CommConfig::default()
        };
        let pair = TemporaryKeyPair::for_build(&comm, "kiln_x")
            .unwrap()
            .unwrap();
        assert_eq!(pair.comment(), "kiln_x");
        comm.temporary_key_pair_name = Some("packer_named".into());
        let pair = TemporaryKeyPair::for_build(&comm, "kiln_x")
            .unwrap()
            .unwrap();
        assert!(pair.public_openssh().ends_with(" packer_named"));

        comm.ssh_agent_auth = true;
        assert!(TemporaryKeyPair::for_build(&comm, "k").unwrap().is_none());
        comm.ssh_agent_auth = false;
        comm.communicator = "none".into();
        assert!(TemporaryKeyPair::for_build(&comm, "k").unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        let key = TemporaryKeyPair::generate_ed25519("from-file").unwrap();
        let pem = key
            .private_key()
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let comm = CommConfig {
            ssh_private_key_file: Some(path.display().to_string()),
            ..CommConfig::default()
        };
        let loaded = TemporaryKeyPair::for_build(&comm, "k").unwrap().unwrap();
        assert_eq!(loaded.public_openssh(), key.public_openssh());

        let comm = CommConfig {
            ssh_private_key_file: Some(dir.path().join("missing").display().to_string()),
            ..CommConfig::default()
        };
        let err = TemporaryKeyPair::for_build(&comm, "k").unwrap_err();
        assert!(err.to_string().contains("ssh_private_key_file"), "{err}");
    }

    #[test]
    fn an_inline_key_is_used_only_where_packer_keeps_it() {
        use crate::config::weak::Secret;
        let inline = TemporaryKeyPair::generate_ed25519("inline").unwrap();
        let pem = inline
            .private_key()
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap();
        let mut comm = CommConfig {
            temporary_key_pair_type: "ed25519".into(),
            ssh_private_key: Some(Secret(pem.to_string())),
            ..CommConfig::default()
        };
        // QEMU and VMware (StepSSHKeyGen), and VirtualBox without a password: a fresh pair.
        let qemu = TemporaryKeyPair::for_build(&comm, "k").unwrap().unwrap();
        assert_ne!(qemu.public_openssh(), inline.public_openssh());
        let vbox = TemporaryKeyPair::for_virtualbox_build(&comm, "k")
            .unwrap()
            .unwrap();
        assert_ne!(vbox.public_openssh(), inline.public_openssh());

        // VirtualBox with a password: the inline key, its public half derived or as given.
        comm.ssh_password = Some(Secret("pw".into()));
        let vbox = TemporaryKeyPair::for_virtualbox_build(&comm, "k")
            .unwrap()
            .unwrap();
        assert_eq!(vbox.public_openssh(), inline.public_openssh());
        assert_eq!(vbox.fingerprint(), inline.fingerprint());
        comm.ssh_public_key = Some("ssh-ed25519 AAAAgiven user@host\n".into());
        let vbox = TemporaryKeyPair::for_virtualbox_build(&comm, "k")
            .unwrap()
            .unwrap();
        assert_eq!(vbox.public_openssh(), "ssh-ed25519 AAAAgiven user@host");
        assert_eq!(vbox.fingerprint(), inline.fingerprint());

        // A key that does not parse is refused without being quoted.
        comm.ssh_private_key = Some(Secret(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n".into(),
        ));
        let err = TemporaryKeyPair::for_virtualbox_build(&comm, "k").unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(msg.contains("ssh_private_key"), "{msg}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
    }
}
