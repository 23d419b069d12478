//! Option groups shared by several builders, with Packer's names and defaults: ISO download,
//! the HTTP server, boot command typing, the communicator (SSH / WinRM), shutdown, output
//! location, and the extra CD / floppy. Builders flatten these into their own config struct.

use super::weak::{self, GoDuration, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the installer ISO comes from (`iso_url` / `iso_urls`) and how it is verified.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct IsoConfig {
    /// The ISO's URL or local path.
    pub iso_url: Option<String>,
    /// Mirrors tried in order; `iso_url` is tried first when both are set.
    #[serde(deserialize_with = "weak::string_list")]
    pub iso_urls: Vec<String>,
    /// `md5:…`, `sha256:…`, bare hex, `file:<url>` or `none`.
    pub iso_checksum: Option<String>,
    /// Older Packer's separate checksum type (`sha256`), combined with `iso_checksum`.
    pub iso_checksum_type: Option<String>,
    /// Where to keep the download instead of the cache.
    pub iso_target_path: Option<String>,
    /// Extension of the cached file.
    pub iso_target_extension: String,
}

impl Default for IsoConfig {
    fn default() -> Self {
        Self {
            iso_url: None,
            iso_urls: Vec::new(),
            iso_checksum: None,
            iso_checksum_type: None,
            iso_target_path: None,
            iso_target_extension: "iso".into(),
        }
    }
}

impl IsoConfig {
    /// Packer's checks: an URL and a checksum (or `"none"`) are required.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.urls().is_empty() {
            out.push((
                "iso_url",
                "one of iso_url or iso_urls must be set".to_owned(),
            ));
        }
        if self.iso_checksum.as_deref().unwrap_or("").is_empty() {
            out.push((
                "iso_checksum",
                "iso_checksum must be set (use \"none\" to skip verification)".to_owned(),
            ));
        }
        out
    }

    /// The checksum in today's `type:value` form, folding in the older `iso_checksum_type`.
    pub fn checksum(&self) -> Option<String> {
        let sum = self.iso_checksum.as_deref()?;
        match self.iso_checksum_type.as_deref() {
            Some("none") => Some("none".to_owned()),
            Some(t) if !t.is_empty() && !sum.contains(':') => Some(format!("{t}:{sum}")),
            _ => Some(sum.to_owned()),
        }
    }

    /// All URLs to try, `iso_url` first.
    pub fn urls(&self) -> Vec<&str> {
        self.iso_url
            .iter()
            .chain(&self.iso_urls)
            .map(String::as_str)
            .collect()
    }
}

/// The built-in HTTP server that serves answer files to the guest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Directory served at `/`; conflicts with `http_content`.
    pub http_directory: Option<String>,
    /// In-memory files: path (starting with `/`) to content.
    pub http_content: BTreeMap<String, String>,
    /// Lowest port tried.
    #[serde(deserialize_with = "weak::int")]
    pub http_port_min: u16,
    /// Highest port tried.
    #[serde(deserialize_with = "weak::int")]
    pub http_port_max: u16,
    /// Address the server listens on.
    pub http_bind_address: String,
    /// Network interface whose address is given to the guest (undocumented in Packer).
    pub http_interface: Option<String>,
    /// `tcp`, `tcp4` or `tcp6`.
    pub http_network_protocol: Option<String>,
}

impl HttpConfig {
    /// Packer's check: one source of files, not both.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        if self.http_directory.is_some() && !self.http_content.is_empty() {
            return vec![(
                "http_content",
                "http_directory and http_content cannot both be set".to_owned(),
            )];
        }
        Vec::new()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            http_directory: None,
            http_content: BTreeMap::new(),
            http_port_min: 8000,
            http_port_max: 9000,
            http_bind_address: "0.0.0.0".into(),
            http_interface: None,
            http_network_protocol: None,
        }
    }
}

/// Typing the boot command.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct BootConfig {
    /// Time to wait after the VM starts before typing; negative means none.
    pub boot_wait: GoDuration,
    /// Keys to type; joined without separator. Template values (`{{ .HTTPIP }}`) stay unexpanded.
    #[serde(deserialize_with = "weak::string_list")]
    pub boot_command: Vec<String>,
    /// Pairs of `[keys, description]`, an alternative to `boot_command`.
    pub boot_steps: Vec<Vec<String>>,
    /// Delay between key events (default: 100ms, or `PACKER_KEY_INTERVAL`).
    pub boot_key_interval: Option<GoDuration>,
    /// Delay between key groups.
    pub boot_keygroup_interval: Option<GoDuration>,
    /// Do not start a VNC server (the boot command cannot be typed over VNC then).
    #[serde(deserialize_with = "weak::bool")]
    pub disable_vnc: bool,
}

impl BootConfig {
    /// Packer's check: `boot_command` or `boot_steps`, not both.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        if !self.boot_command.is_empty() && !self.boot_steps.is_empty() {
            return vec![(
                "boot_steps",
                "boot_command and boot_steps cannot both be set".to_owned(),
            )];
        }
        Vec::new()
    }
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            boot_wait: GoDuration::secs(10),
            boot_command: Vec::new(),
            boot_steps: Vec::new(),
            boot_key_interval: None,
            boot_keygroup_interval: None,
            disable_vnc: false,
        }
    }
}

/// How kiln talks to the guest: `ssh` (default), `winrm` or `none`, with every `ssh_*` and
/// `winrm_*` option Packer's SDK accepts.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CommConfig {
    /// `ssh`, `winrm` or `none`.
    pub communicator: String,
    /// Wait this long before the first connection attempt.
    pub pause_before_connecting: Option<GoDuration>,
    /// Host to connect to; the builder's forwarded address when unset.
    pub ssh_host: Option<String>,
    /// Guest SSH port.
    #[serde(deserialize_with = "weak::int")]
    pub ssh_port: u16,
    /// Login user.
    pub ssh_username: Option<String>,
    /// Login password (secret).
    pub ssh_password: Option<Secret>,
    /// Name of an existing key pair (cloud builders).
    pub ssh_keypair_name: Option<String>,
    /// Name of the temporary key pair.
    pub temporary_key_pair_name: Option<String>,
    /// `rsa`, `dsa`, `ecdsa` or `ed25519`.
    pub temporary_key_pair_type: String,
    /// Key size for the temporary key pair.
    #[serde(deserialize_with = "weak::opt_int")]
    pub temporary_key_pair_bits: Option<u32>,
    /// Allowed ciphers.
    pub ssh_ciphers: Vec<String>,
    /// Remove the temporary key from authorized_keys at the end.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_clear_authorized_keys: bool,
    /// Allowed key exchange algorithms.
    pub ssh_key_exchange_algorithms: Vec<String>,
    /// Private key to log in with.
    pub ssh_private_key_file: Option<String>,
    /// Certificate for the private key.
    pub ssh_certificate_file: Option<String>,
    /// Request a PTY.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_pty: bool,
    /// How long to wait for SSH to become available: 5m unless only `ssh_handshake_attempts`
    /// is set (see [`CommConfig::ssh_timeout`]).
    pub ssh_timeout: Option<GoDuration>,
    /// Older name of `ssh_timeout`.
    pub ssh_wait_timeout: Option<GoDuration>,
    /// Authenticate with the local SSH agent.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_agent_auth: bool,
    /// Do not forward the agent.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_disable_agent_forwarding: bool,
    /// Rejected logins before giving up: 10 unless only `ssh_timeout` is set (see
    /// [`CommConfig::ssh_handshake_attempts`]).
    #[serde(deserialize_with = "weak::opt_int")]
    pub ssh_handshake_attempts: Option<u32>,
    /// Bastion host.
    pub ssh_bastion_host: Option<String>,
    /// Bastion port.
    #[serde(deserialize_with = "weak::int")]
    pub ssh_bastion_port: u16,
    /// Use the agent for the bastion.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_bastion_agent_auth: bool,
    /// Bastion user.
    pub ssh_bastion_username: Option<String>,
    /// Bastion password (secret).
    pub ssh_bastion_password: Option<Secret>,
    /// Keyboard-interactive auth for the bastion.
    #[serde(deserialize_with = "weak::bool")]
    pub ssh_bastion_interactive: bool,
    /// Bastion private key.
    pub ssh_bastion_private_key_file: Option<String>,
    /// Bastion certificate.
    pub ssh_bastion_certificate_file: Option<String>,
    /// `scp` or `sftp`.
    pub ssh_file_transfer_method: String,
    /// SOCKS proxy host.
    pub ssh_proxy_host: Option<String>,
    /// SOCKS proxy port.
    #[serde(deserialize_with = "weak::int")]
    pub ssh_proxy_port: u16,
    /// SOCKS proxy user.
    pub ssh_proxy_username: Option<String>,
    /// SOCKS proxy password (secret).
    pub ssh_proxy_password: Option<Secret>,
    /// Keep-alive interval; negative disables, zero means the default 5s.
    pub ssh_keep_alive_interval: GoDuration,
    /// Drop a connection that moves no data for this long; zero (default) disables.
    pub ssh_read_write_timeout: GoDuration,
    /// `-R`-style remote tunnels.
    pub ssh_remote_tunnels: Vec<String>,
    /// `-L`-style local tunnels.
    pub ssh_local_tunnels: Vec<String>,
    /// WinRM user.
    pub winrm_username: Option<String>,
    /// WinRM password (secret).
    pub winrm_password: Option<Secret>,
    /// WinRM host.
    pub winrm_host: Option<String>,
    /// Bypass the proxy for WinRM.
    #[serde(deserialize_with = "weak::bool")]
    pub winrm_no_proxy: bool,
    /// WinRM port (5985, or 5986 with SSL).
    #[serde(deserialize_with = "weak::opt_int")]
    pub winrm_port: Option<u16>,
    /// How long to wait for WinRM.
    pub winrm_timeout: GoDuration,
    /// Delay between WinRM connection attempts.
    pub winrm_retry_interval: Option<GoDuration>,
    /// Timeout of one WinRM connection attempt.
    pub winrm_connect_timeout: Option<GoDuration>,
    /// Use HTTPS.
    #[serde(deserialize_with = "weak::bool")]
    pub winrm_use_ssl: bool,
    /// Skip certificate checks.
    #[serde(deserialize_with = "weak::bool")]
    pub winrm_insecure: bool,
    /// NTLM authentication.
    #[serde(deserialize_with = "weak::bool")]
    pub winrm_use_ntlm: bool,
}

impl Default for CommConfig {
    fn default() -> Self {
        Self {
            communicator: "ssh".into(),
            pause_before_connecting: None,
            ssh_host: None,
            ssh_port: 22,
            ssh_username: None,
            ssh_password: None,
            ssh_keypair_name: None,
            temporary_key_pair_name: None,
            temporary_key_pair_type: "rsa".into(),
            temporary_key_pair_bits: None,
            ssh_ciphers: Vec::new(),
            ssh_clear_authorized_keys: false,
            ssh_key_exchange_algorithms: Vec::new(),
            ssh_private_key_file: None,
            ssh_certificate_file: None,
            ssh_pty: false,
            ssh_timeout: None,
            ssh_wait_timeout: None,
            ssh_agent_auth: false,
            ssh_disable_agent_forwarding: false,
            ssh_handshake_attempts: None,
            ssh_bastion_host: None,
            ssh_bastion_port: 22,
            ssh_bastion_agent_auth: false,
            ssh_bastion_username: None,
            ssh_bastion_password: None,
            ssh_bastion_interactive: false,
            ssh_bastion_private_key_file: None,
            ssh_bastion_certificate_file: None,
            ssh_file_transfer_method: "scp".into(),
            ssh_proxy_host: None,
            ssh_proxy_port: 1080,
            ssh_proxy_username: None,
            ssh_proxy_password: None,
            ssh_keep_alive_interval: GoDuration::secs(5),
            ssh_read_write_timeout: GoDuration::default(),
            ssh_remote_tunnels: Vec::new(),
            ssh_local_tunnels: Vec::new(),
            winrm_username: None,
            winrm_password: None,
            winrm_host: None,
            winrm_no_proxy: false,
            winrm_port: None,
            winrm_timeout: GoDuration::secs(1800),
            winrm_retry_interval: None,
            winrm_connect_timeout: None,
            winrm_use_ssl: false,
            winrm_insecure: false,
            winrm_use_ntlm: false,
        }
    }
}

impl CommConfig {
    /// The effective SSH timeout, `None` for no limit. Packer's rules: 5m and 10 handshake
    /// attempts when neither option is set; setting one leaves the other unlimited; the older
    /// `ssh_wait_timeout` wins when set.
    pub fn ssh_timeout(&self) -> Option<std::time::Duration> {
        let set = |d: &Option<GoDuration>| d.map(|d| d.clamped()).filter(|d| !d.is_zero());
        if let Some(wait) = set(&self.ssh_wait_timeout) {
            return Some(wait);
        }
        match (set(&self.ssh_timeout), self.handshake_attempts_set()) {
            (None, None) => Some(std::time::Duration::from_secs(300)),
            (t, _) => t,
        }
    }

    /// The effective `ssh_handshake_attempts`, 0 for no limit (see [`CommConfig::ssh_timeout`]).
    pub fn ssh_handshake_attempts(&self) -> u32 {
        let timeout_set = self.ssh_timeout.is_some_and(|d| !d.clamped().is_zero());
        match self.handshake_attempts_set() {
            Some(n) => n,
            None if timeout_set => 0,
            None => 10,
        }
    }

    fn handshake_attempts_set(&self) -> Option<u32> {
        self.ssh_handshake_attempts.filter(|n| *n > 0)
    }

    /// `ssh_keep_alive_interval`: `None` when negative (off), 5s when zero, as in Packer.
    pub fn ssh_keep_alive_interval(&self) -> Option<std::time::Duration> {
        let k = self.ssh_keep_alive_interval;
        match (k.negative, k.duration.is_zero()) {
            (true, _) => None,
            (false, true) => Some(std::time::Duration::from_secs(5)),
            (false, false) => Some(k.duration),
        }
    }

    /// The effective WinRM port.
    pub fn winrm_port(&self) -> u16 {
        self.winrm_port
            .unwrap_or(if self.winrm_use_ssl { 5986 } else { 5985 })
    }
}

/// Stopping the guest at the end of the build.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ShutdownConfig {
    /// Command run in the guest; without it the VM is stopped hard.
    pub shutdown_command: Option<String>,
    /// How long to wait for the VM to stop after the command.
    pub shutdown_timeout: GoDuration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            shutdown_command: None,
            shutdown_timeout: GoDuration::secs(300),
        }
    }
}

/// Where the result goes and what the VM is called.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct OutputConfig {
    /// Output directory; `output-<build name>` when unset.
    pub output_directory: Option<String>,
    /// VM / disk name; `packer-<build name>` when unset.
    pub vm_name: Option<String>,
}

impl OutputConfig {
    /// The output directory for the build named `build_name` (`type.name` → its name part).
    pub fn output_directory(&self, build_name: &str) -> String {
        self.output_directory
            .clone()
            .unwrap_or_else(|| format!("output-{build_name}"))
    }

    /// The VM name for the build named `build_name`.
    pub fn vm_name(&self, build_name: &str) -> String {
        self.vm_name
            .clone()
            .unwrap_or_else(|| format!("packer-{build_name}"))
    }
}

/// The host port range a NAT port forward to the guest's SSH (or WinRM) port is picked from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HostPortConfig {
    /// Lowest host port forwarded to the guest.
    #[serde(deserialize_with = "weak::int")]
    pub host_port_min: u16,
    /// Highest host port forwarded to the guest.
    #[serde(deserialize_with = "weak::int")]
    pub host_port_max: u16,
    /// Older name of `host_port_min`.
    #[serde(deserialize_with = "weak::opt_int")]
    pub ssh_host_port_min: Option<u16>,
    /// Older name of `host_port_max`.
    #[serde(deserialize_with = "weak::opt_int")]
    pub ssh_host_port_max: Option<u16>,
}

impl Default for HostPortConfig {
    fn default() -> Self {
        Self {
            host_port_min: 2222,
            host_port_max: 4444,
            ssh_host_port_min: None,
            ssh_host_port_max: None,
        }
    }
}

impl HostPortConfig {
    /// The range, honouring the older `ssh_host_port_*` names.
    pub fn range(&self) -> (u16, u16) {
        (
            self.ssh_host_port_min.unwrap_or(self.host_port_min),
            self.ssh_host_port_max.unwrap_or(self.host_port_max),
        )
    }

    /// Packer's checks of the range.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let (min, max) = self.range();
        if min > max {
            return vec![(
                "host_port_min",
                format!("host_port_min ({min}) is above host_port_max ({max})"),
            )];
        }
        Vec::new()
    }
}

/// A second CD made from files and inline content.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CdConfig {
    /// Files and directories (globs allowed) put on the CD.
    #[serde(deserialize_with = "weak::string_list")]
    pub cd_files: Vec<String>,
    /// Path on the CD to content.
    pub cd_content: BTreeMap<String, String>,
    /// Volume label.
    pub cd_label: Option<String>,
}

/// A floppy image made from files, directories and inline content.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FloppyConfig {
    /// Files put at the root of the floppy.
    #[serde(deserialize_with = "weak::string_list")]
    pub floppy_files: Vec<String>,
    /// Directories copied recursively.
    pub floppy_dirs: Vec<String>,
    /// Path on the floppy to content.
    pub floppy_content: BTreeMap<String, String>,
    /// Volume label.
    pub floppy_label: String,
}

impl Default for FloppyConfig {
    fn default() -> Self {
        Self {
            floppy_files: Vec::new(),
            floppy_dirs: Vec::new(),
            floppy_content: BTreeMap::new(),
            floppy_label: "packer".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comm(json: serde_json::Value) -> CommConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn ssh_timeout_and_handshake_attempts_default_together_as_in_packer() {
        use std::time::Duration;
        let c = comm(serde_json::json!({}));
        assert_eq!(c.ssh_timeout(), Some(Duration::from_secs(300)));
        assert_eq!(c.ssh_handshake_attempts(), 10);
        // Setting one leaves the other unlimited.
        let c = comm(serde_json::json!({"ssh_timeout": "20m"}));
        assert_eq!(c.ssh_timeout(), Some(Duration::from_secs(1200)));
        assert_eq!(c.ssh_handshake_attempts(), 0);
        let c = comm(serde_json::json!({"ssh_handshake_attempts": "3"}));
        assert_eq!(c.ssh_timeout(), None);
        assert_eq!(c.ssh_handshake_attempts(), 3);
        // The older name wins, and leaves the attempts at their default.
        let c = comm(serde_json::json!({"ssh_wait_timeout": "1m", "ssh_timeout": "9m"}));
        assert_eq!(c.ssh_timeout(), Some(Duration::from_secs(60)));
        let c = comm(serde_json::json!({"ssh_wait_timeout": "1m"}));
        assert_eq!(c.ssh_handshake_attempts(), 10);
    }

    #[test]
    fn keep_alive_negative_disables_and_zero_is_the_default() {
        use std::time::Duration;
        let k = |v: &str| {
            comm(serde_json::json!({"ssh_keep_alive_interval": v})).ssh_keep_alive_interval()
        };
        assert_eq!(k("-1s"), None);
        assert_eq!(k("0s"), Some(Duration::from_secs(5)));
        assert_eq!(k("30s"), Some(Duration::from_secs(30)));
        assert_eq!(
            comm(serde_json::json!({})).ssh_keep_alive_interval(),
            Some(Duration::from_secs(5))
        );
    }
}
