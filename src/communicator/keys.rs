//! The temporary SSH key pair a build makes when the template gives no key or password
//! (Packer's `temporary_key_pair_type`, ed25519 here): the public half goes to the guest
//! through `{{ .SSHPublicKey }}`, the private half stays in memory and is never logged.

use std::fmt;
use std::sync::Arc;

use russh::keys::{Algorithm, HashAlg, PrivateKey};

/// Why a key pair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generation or encoding failed (this indicates a broken crypto backend).
    #[error("cannot generate a temporary ed25519 key pair")]
    Generate(#[source] russh::keys::ssh_key::Error),
}

/// A key pair that lives for one build.
#[derive(Clone)]
pub struct TemporaryKeyPair {
    private: Arc<PrivateKey>,
    public_openssh: String,
}

impl TemporaryKeyPair {
    /// Make a fresh ed25519 key pair. `comment` ends up in the guest's authorized_keys
    /// (Packer uses the build name), so the key can be found and removed later.
    pub fn generate_ed25519(comment: &str) -> Result<Self, KeyError> {
        let mut rng = russh::keys::key::safe_rng();
        let mut private =
            PrivateKey::random(&mut rng, Algorithm::Ed25519).map_err(KeyError::Generate)?;
        private.set_comment(comment);
        let public_openssh = private
            .public_key()
            .to_openssh()
            .map_err(KeyError::Generate)?;
        Ok(Self {
            private: Arc::new(private),
            public_openssh,
        })
    }

    /// The public key as one authorized_keys line: `ssh-ed25519 AAAA… comment`.
    pub fn public_openssh(&self) -> &str {
        &self.public_openssh
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
}
