//! Option groups shared by several builders, with Packer's names and defaults: ISO download,
//! the HTTP server, boot command typing, the communicator (SSH / WinRM), shutdown, output
//! location, and the extra CD / floppy. Builders flatten these into their own config struct.

use super::weak::{self, GoDuration, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// An option group's checks, so that a builder lists its groups once (see `option_groups!`).
pub trait Group {
    /// What Packer's `Prepare()` refuses.
    fn problems(&self) -> Vec<(&'static str, String)>;
    /// What Packer's `Prepare()` warns about.
    fn warnings(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// Declares a builder config's option groups, once: its `group_problems()` (for its own
/// `problems()`) and its `warnings()`, Packer's, from the groups. `; across: T` adds the
/// config's checks that span several groups (Packer's builder-level `Prepare()` code, such
/// as `headless` with `disable_vnc`): `T` is a `Group` built from `&config` (`T(self)`),
/// checked after the groups.
macro_rules! option_groups {
    ($t:ty: $($field:ident),+ $(; across: $across:ident)?) => {
        impl $t {
            /// The shared option groups, then the checks across them.
            fn groups(&self) -> Vec<Box<dyn $crate::config::common::Group + '_>> {
                #[allow(unused_mut)]
                let mut g: Vec<Box<dyn $crate::config::common::Group + '_>> =
                    vec![$(Box::new(&self.$field)),+];
                $(g.push(Box::new($across(self)));)?
                g
            }

            /// What Packer's `Prepare()` refuses in the groups and across them.
            fn group_problems(&self) -> Vec<(&'static str, String)> {
                self.groups().iter().flat_map(|g| g.problems()).collect()
            }

            /// Packer's warnings.
            pub fn warnings(&self) -> Vec<(&'static str, String)> {
                self.groups().iter().flat_map(|g| g.warnings()).collect()
            }
        }
    };
}
pub(crate) use option_groups;

/// A borrowed group is checked as the group.
impl<G: Group + ?Sized> Group for &G {
    fn problems(&self) -> Vec<(&'static str, String)> {
        (**self).problems()
    }
    fn warnings(&self) -> Vec<(&'static str, String)> {
        (**self).warnings()
    }
}

macro_rules! group {
    ($($t:ty: $($m:ident),+);* $(;)?) => {$(impl Group for $t { $(fn $m(&self) -> Vec<(&'static str, String)> { <$t>::$m(self) })+ })*};
}
group!(
    IsoConfig: problems, warnings;
    HttpConfig: problems;
    BootConfig: problems, warnings;
    CommConfig: problems;
    HostPortConfig: problems, warnings;
    CdConfig: problems;
    FloppyConfig: problems;
);

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
            return out;
        }
        use crate::download::checksum::ChecksumSpec;
        match self.checksum().as_deref().map(ChecksumSpec::parse) {
            Some(Err(e)) => out.push(("iso_checksum", format!("invalid iso_checksum: {e}"))),
            Some(Ok(ChecksumSpec::File { location, .. })) => {
                out.extend(self.checksum_file_problem(&location));
            }
            _ => {}
        }
        out
    }

    /// Packer reads a local `file:` checksum list at validate time: it must not be the ISO
    /// itself, and an absolute one must exist.
    fn checksum_file_problem(&self, location: &str) -> Option<(&'static str, String)> {
        let local = match location.split_once("://") {
            None => location,
            Some(("file", path)) => path,
            Some(_) => return None,
        };
        let same = |url: &&str| {
            let url = url.strip_prefix("file://").unwrap_or(url);
            std::path::Path::new(url) == std::path::Path::new(local)
        };
        if self.urls().iter().any(same) {
            return Some((
                "iso_checksum",
                format!("iso_checksum file:{location} names the ISO itself, not a checksum list (such as SHA256SUMS)"),
            ));
        }
        let path = expand_home(local);
        // A relative list is read from the template's directory, which the build knows: the
        // download step checks it there.
        if path.is_absolute() && !path.is_file() {
            return Some((
                "iso_checksum",
                format!("the checksum list {local} of iso_checksum does not exist"),
            ));
        }
        None
    }

    /// Packer's warnings: verification turned off.
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        match self.checksum() {
            Some(c) if c.eq_ignore_ascii_case("none") => vec![(
                "iso_checksum",
                "iso_checksum is \"none\": the ISO is not verified; since ISO files are big, a checksum is highly recommended".to_owned(),
            )],
            _ => Vec::new(),
        }
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
    /// Packer's checks: one source of files, a port range, one way to pick the address.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.http_directory.is_some() && !self.http_content.is_empty() {
            out.push((
                "http_content",
                "http_directory and http_content cannot both be set".to_owned(),
            ));
        }
        if self.http_port_min > self.http_port_max {
            out.push((
                "http_port_min",
                format!(
                    "http_port_min ({}) must not be above http_port_max ({})",
                    self.http_port_min, self.http_port_max
                ),
            ));
        }
        if let Some(p) = &self.http_network_protocol {
            if p.starts_with("unix") {
                // Packer accepts these; a guest cannot reach a socket on the host's disk.
                out.push((
                    "http_network_protocol",
                    format!("http_network_protocol {p:?}: kiln serves answer files over TCP, which is what a guest can reach: use tcp, tcp4 or tcp6"),
                ));
            } else {
                out.extend(super::one_of(
                    "http_network_protocol",
                    p,
                    &["tcp", "tcp4", "tcp6"],
                ));
            }
        }
        if self.http_interface.is_some() && self.http_bind_address != "0.0.0.0" {
            out.push((
                "http_interface",
                "set either http_interface or http_bind_address, not both".to_owned(),
            ));
        }
        out
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

/// The template values a boot command may use (`{{ .HTTPIP }}`…), as the build context sets
/// them, with the stand-in values `validate` renders a command with.
pub const BOOT_TEMPLATE_VALUES: [(&str, &str); 7] = [
    ("HTTPIP", "10.0.2.2"),
    ("HTTPPort", "8000"),
    ("HTTPDir", "http"),
    ("Name", "packer-vm"),
    ("OutputDir", "output-vm"),
    ("SSHHostPort", "2222"),
    ("SSHPublicKey", "ssh-ed25519 AAAA"),
];

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
    /// Packer's check (`boot_command` or `boot_steps`, not both), and what the build would
    /// find only once the VM has booted: each command rendered with stand-in values for
    /// `{{ .HTTPIP }}` and the rest, parsed, and encoded for the keyboard (US layout).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        if !self.boot_command.is_empty() && !self.boot_steps.is_empty() {
            return vec![(
                "boot_steps",
                "boot_command and boot_steps cannot both be set".to_owned(),
            )];
        }
        self.parsed()
            .into_iter()
            .filter_map(|c| match c.outcome {
                BootOutcome::Invalid(e) => Some((c.key, e)),
                BootOutcome::Typeable(_) => None,
            })
            .collect()
    }

    /// The parser's warnings (an unknown `<tag>` is typed as it is).
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        self.parsed()
            .into_iter()
            .flat_map(|c| match c.outcome {
                BootOutcome::Typeable(warnings) => {
                    warnings.into_iter().map(|w| (c.key, w)).collect()
                }
                BootOutcome::Invalid(_) => Vec::new(),
            })
            .collect()
    }

    /// Each command to type (`boot_command` joined, or each of `boot_steps`) with its option
    /// name, checked as [`BootConfig::problems`] says: its warnings, or why it cannot be typed.
    fn parsed(&self) -> Vec<BootCheck> {
        let commands: Vec<(&'static str, String)> = if self.boot_steps.is_empty() {
            if self.boot_command.is_empty() {
                return Vec::new();
            }
            vec![("boot_command", self.boot_command.concat())]
        } else {
            self.boot_steps
                .iter()
                .map(|s| ("boot_steps", s.first().cloned().unwrap_or_default()))
                .collect()
        };
        let values: BTreeMap<String, String> = BOOT_TEMPLATE_VALUES
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let check = |key: &str, text: &str| {
            let rendered = boot_commands::render(text, &values).map_err(|e| e.to_string())?;
            let parsed = boot_commands::parse(&rendered).map_err(|e| e.to_string())?;
            boot_commands::encode(&parsed.actions, &boot_commands::US)
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(
                parsed
                    .warnings
                    .iter()
                    .map(|w| format!("{key} at {}: {}", w.position, w.message))
                    .collect(),
            )
        };
        commands
            .into_iter()
            .map(|(key, text)| BootCheck {
                key,
                outcome: match check(key, &text) {
                    Ok(warnings) => BootOutcome::Typeable(warnings),
                    Err(e) => BootOutcome::Invalid(format!("invalid {key}: {e}")),
                },
            })
            .collect()
    }
}

/// One boot command checked at validate time.
struct BootCheck {
    /// `boot_command` or `boot_steps`.
    key: &'static str,
    outcome: BootOutcome,
}

/// What the build would find typing it.
enum BootOutcome {
    /// It can be typed; the parser's warnings.
    Typeable(Vec<String>),
    /// It cannot, and why.
    Invalid(String),
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
    /// A private key given inline (secret). Undocumented in Packer, where build steps set it;
    /// a template may set it too: VirtualBox builds that log in with `ssh_password` or
    /// `ssh_agent_auth` then also offer it, QEMU and VMware builds replace it with their key
    /// pair (see `TemporaryKeyPair::for_build`).
    pub ssh_private_key: Option<Secret>,
    /// The public key given inline, what `{{ .SSHPublicKey }}` gives where `ssh_private_key`
    /// is used. Undocumented in Packer, as `ssh_private_key`.
    pub ssh_public_key: Option<String>,
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
            ssh_private_key: None,
            ssh_public_key: None,
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

    /// Packer's checks (the SDK's communicator `Prepare()`): a known communicator, the user to
    /// log in as, key and certificate files that exist and parse, a bastion with a way to log
    /// in and no proxy beside it, a known file transfer method, tunnels Packer can parse.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = super::one_of(
            "communicator",
            &self.communicator,
            &["ssh", "winrm", "none"],
        )
        .into_iter()
        .collect();
        match self.communicator.as_str() {
            "ssh" => out.extend(self.ssh_problems()),
            "winrm" if self.winrm_username.as_deref().unwrap_or("").is_empty() => out.push((
                "winrm_username",
                "winrm_username must be set with communicator = \"winrm\"".to_owned(),
            )),
            _ => {}
        }
        out
    }

    fn ssh_problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.ssh_username.as_deref().unwrap_or("").is_empty() {
            out.push((
                "ssh_username",
                "ssh_username must be set with communicator = \"ssh\" (some builders once defaulted it to root; kiln and Packer do not)".to_owned(),
            ));
        }
        if let Some(key) = &self.ssh_private_key_file {
            let path = expand_home(key);
            if let Err(e) = russh::keys::load_secret_key(&path, None) {
                let why = if path.is_file() {
                    format!("is not a private key kiln can read ({e})")
                } else {
                    "does not exist".to_owned()
                };
                out.push((
                    "ssh_private_key_file",
                    format!("ssh_private_key_file {key} {why}"),
                ));
            }
        }
        if let Some(cert) = &self.ssh_certificate_file {
            if self.ssh_private_key_file.is_none() {
                out.push((
                    "ssh_certificate_file",
                    "ssh_certificate_file needs ssh_private_key_file, the key it certifies"
                        .to_owned(),
                ));
            }
            if !expand_home(cert).is_file() {
                out.push((
                    "ssh_certificate_file",
                    format!("ssh_certificate_file {cert} does not exist"),
                ));
            }
        }
        if self.ssh_bastion_host.is_some() {
            let auth = self.ssh_bastion_password.is_some()
                || self.ssh_bastion_private_key_file.is_some()
                || self.ssh_bastion_agent_auth
                || self.ssh_bastion_interactive;
            if !auth {
                out.push((
                    "ssh_bastion_host",
                    "ssh_bastion_host needs a way to log in: ssh_bastion_password, ssh_bastion_private_key_file, ssh_bastion_agent_auth or ssh_bastion_interactive".to_owned(),
                ));
            }
            if self.ssh_proxy_host.is_some() {
                out.push((
                    "ssh_proxy_host",
                    "set either ssh_bastion_host or ssh_proxy_host, not both".to_owned(),
                ));
            }
        }
        out.extend(super::one_of(
            "ssh_file_transfer_method",
            &self.ssh_file_transfer_method,
            &["scp", "sftp"],
        ));
        out.extend(super::one_of(
            "temporary_key_pair_type",
            &self.temporary_key_pair_type,
            &["rsa", "dsa", "ecdsa", "ed25519"],
        ));
        for (key, tunnels) in [
            ("ssh_remote_tunnels", &self.ssh_remote_tunnels),
            ("ssh_local_tunnels", &self.ssh_local_tunnels),
        ] {
            for t in tunnels.iter().filter(|t| !tunnel_is_valid(t)) {
                out.push((
                    key,
                    format!("{key} entry {t:?} is not [bind_address:]port:host:hostport (ssh -L/-R syntax)"),
                ));
            }
        }
        out
    }

    /// The effective WinRM port.
    pub fn winrm_port(&self) -> u16 {
        self.winrm_port
            .unwrap_or(if self.winrm_use_ssl { 5986 } else { 5985 })
    }
}

/// Whether `t` is an ssh `-L`/`-R` forward as Packer parses it: `[bind_address:]port:host:hostport`,
/// where a port may be a Unix socket path instead.
fn tunnel_is_valid(t: &str) -> bool {
    let parts: Vec<&str> = t.split(':').collect();
    let port = |p: &str| p.starts_with('/') || p.parse::<u16>().is_ok_and(|n| n > 0);
    match parts.as_slice() {
        [lport, host, rport] | [_, lport, host, rport] => {
            port(lport) && !host.is_empty() && port(rport)
        }
        [a, b] => a.starts_with('/') && b.starts_with('/'),
        _ => false,
    }
}

/// `path` with a leading `~/` replaced by the home directory, as OpenSSH and Packer read key
/// file names.
pub fn expand_home(path: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    match path.strip_prefix('~') {
        Some("") => home().unwrap_or_else(|| PathBuf::from(path)),
        Some(rest) if rest.starts_with('/') => match home() {
            Some(h) => h.join(&rest[1..]),
            None => PathBuf::from(path),
        },
        _ => PathBuf::from(path),
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

    /// Packer's warning for the older names.
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        [
            ("ssh_host_port_min", self.ssh_host_port_min, "host_port_min"),
            ("ssh_host_port_max", self.ssh_host_port_max, "host_port_max"),
        ]
        .into_iter()
        .filter(|(_, set, _)| set.is_some())
        .map(|(old, _, new)| (old, format!("{old} is deprecated: use {new}")))
        .collect()
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

/// Packer's check of listed files: a name without glob characters must exist (relative
/// names are read from the working directory, as the build reads them).
fn missing_files<'a>(
    key: &'static str,
    names: impl IntoIterator<Item = &'a String>,
    what: &str,
    exists: fn(&std::path::Path) -> bool,
) -> Vec<(&'static str, String)> {
    names
        .into_iter()
        .filter(|n| !n.contains(['*', '?', '[']) && !exists(std::path::Path::new(n.as_str())))
        .map(|n| (key, format!("{key} entry {n}: no such {what}")))
        .collect()
}

impl CdConfig {
    /// Packer's check: each named file exists.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        missing_files("cd_files", &self.cd_files, "file or directory", |p| {
            p.exists()
        })
    }
}

impl FloppyConfig {
    /// Packer's checks: each named file and directory exists.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = missing_files("floppy_files", &self.floppy_files, "file", |p| p.is_file());
        out.extend(missing_files(
            "floppy_dirs",
            &self.floppy_dirs,
            "directory",
            |p| p.is_dir(),
        ));
        out
    }
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

    /// Accept / reject / warn, per option group, with cases from Packer's own tests (the file
    /// of the SDK each comes from is named) and from its `Prepare()` checks.
    #[test]
    fn prepare_checks_match_packers_table() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let d = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(d("SHA256SUMS"), "x").unwrap();
        std::fs::write(d("a.iso"), "x").unwrap();
        std::fs::write(d("not-a-key"), "hello").unwrap();
        std::fs::create_dir(d("dir")).unwrap();
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/installer/insecure_ed25519"
        );

        // (source file, group, options, error substring or "" for accepted, warning substring)
        let cases: Vec<(&str, &str, serde_json::Value, String, &str)> = vec![
            // communicator/config_test.go
            (
                "TestConfigType",
                "comm",
                json!({"ssh_username": "root"}),
                "".into(),
                "",
            ),
            (
                "TestConfig_none",
                "comm",
                json!({"communicator": "none"}),
                "".into(),
                "",
            ),
            (
                "TestConfig_badtype",
                "comm",
                json!({"communicator": "foo"}),
                "communicator \"foo\" is not supported".into(),
                "",
            ),
            (
                "TestConfig_winrm_noUser",
                "comm",
                json!({"communicator": "winrm"}),
                "winrm_username must be set".into(),
                "",
            ),
            (
                "TestConfig_winrm",
                "comm",
                json!({"communicator": "winrm", "winrm_username": "admin"}),
                "".into(),
                "",
            ),
            (
                "ssh without user",
                "comm",
                json!({}),
                "ssh_username must be set".into(),
                "",
            ),
            (
                "certificate without key",
                "comm",
                json!({"ssh_username": "u", "ssh_certificate_file": d("SHA256SUMS")}),
                "needs ssh_private_key_file".into(),
                "",
            ),
            (
                "missing private key",
                "comm",
                json!({"ssh_username": "u", "ssh_private_key_file": d("nope")}),
                "does not exist".into(),
                "",
            ),
            (
                "unparsable private key",
                "comm",
                json!({"ssh_username": "u", "ssh_private_key_file": d("not-a-key")}),
                "is not a private key".into(),
                "",
            ),
            (
                "private key",
                "comm",
                json!({"ssh_username": "u", "ssh_private_key_file": key}),
                "".into(),
                "",
            ),
            (
                "TestSSHBastion (no auth)",
                "comm",
                json!({"ssh_username": "u", "ssh_bastion_host": "b"}),
                "needs a way to log in".into(),
                "",
            ),
            (
                "TestSSHBastion",
                "comm",
                json!({"ssh_username": "u", "ssh_bastion_host": "b", "ssh_bastion_password": "p"}),
                "".into(),
                "",
            ),
            (
                "bastion and proxy",
                "comm",
                json!({"ssh_username": "u", "ssh_bastion_host": "b", "ssh_bastion_agent_auth": true, "ssh_proxy_host": "p"}),
                "not both".into(),
                "",
            ),
            (
                "file transfer method",
                "comm",
                json!({"ssh_username": "u", "ssh_file_transfer_method": "ftp"}),
                "ssh_file_transfer_method \"ftp\"".into(),
                "",
            ),
            (
                "tunnels",
                "comm",
                json!({"ssh_username": "u", "ssh_remote_tunnels": ["8080:localhost:80", "0.0.0.0:1:h:2"], "ssh_local_tunnels": ["/a.sock:/b.sock"]}),
                "".into(),
                "",
            ),
            (
                "bad tunnel",
                "comm",
                json!({"ssh_username": "u", "ssh_local_tunnels": ["8080"]}),
                "ssh_local_tunnels entry \"8080\"".into(),
                "",
            ),
            // multistep/commonsteps/iso_config_test.go
            (
                "TestISOConfigPrepare_ISOChecksum (bare sha256)",
                "iso",
                json!({"iso_url": "x", "iso_checksum": "0".repeat(64)}),
                "".into(),
                "",
            ),
            (
                "TestISOConfigPrepare_ISOChecksumType none",
                "iso",
                json!({"iso_url": "x", "iso_checksum": "none"}),
                "".into(),
                "not verified",
            ),
            (
                "not hex",
                "iso",
                json!({"iso_url": "x", "iso_checksum": "sha256:zz"}),
                "not a hex digest".into(),
                "",
            ),
            (
                "length of no algorithm",
                "iso",
                json!({"iso_url": "x", "iso_checksum": "abc"}),
                "3-digit".into(),
                "",
            ),
            (
                "unsupported type",
                "iso",
                json!({"iso_url": "x", "iso_checksum": "md4:00"}),
                "unknown checksum type".into(),
                "",
            ),
            (
                "TestISOConfigPrepare_ISOChecksumLocalFile",
                "iso",
                json!({"iso_url": "x", "iso_checksum": format!("file:{}", d("SHA256SUMS"))}),
                "".into(),
                "",
            ),
            (
                "file: checksum missing",
                "iso",
                json!({"iso_url": "x", "iso_checksum": format!("file:{}", d("nope"))}),
                "does not exist".into(),
                "",
            ),
            (
                "file: checksum is the ISO",
                "iso",
                json!({"iso_url": d("a.iso"), "iso_checksum": format!("file://{}", d("a.iso"))}),
                "names the ISO itself".into(),
                "",
            ),
            (
                "remote file: checksum",
                "iso",
                json!({"iso_url": "x", "iso_checksum": "file:https://example.invalid/SUMS"}),
                "".into(),
                "",
            ),
            // multistep/commonsteps/http_config_test.go
            (
                "TestHTTPConfigPrepare (range)",
                "http",
                json!({"http_port_min": 2000, "http_port_max": 1000}),
                "http_port_min (2000)".into(),
                "",
            ),
            (
                "protocol",
                "http",
                json!({"http_network_protocol": "udp"}),
                "http_network_protocol \"udp\"".into(),
                "",
            ),
            (
                "protocol tcp6",
                "http",
                json!({"http_network_protocol": "tcp6"}),
                "".into(),
                "",
            ),
            (
                "protocol unix (kiln: TCP only)",
                "http",
                json!({"http_network_protocol": "unix"}),
                "over TCP".into(),
                "",
            ),
            (
                "interface and address",
                "http",
                json!({"http_interface": "eth0", "http_bind_address": "10.0.0.1"}),
                "not both".into(),
                "",
            ),
            // multistep/commonsteps/floppy_config_test.go
            (
                "TestFloppyConfigPrepare (missing file)",
                "floppy",
                json!({"floppy_files": [d("nope")]}),
                "floppy_files entry".into(),
                "",
            ),
            (
                "floppy glob",
                "floppy",
                json!({"floppy_files": [d("*.cfg")], "floppy_dirs": [d("dir")]}),
                "".into(),
                "",
            ),
            (
                "floppy dir is a file",
                "floppy",
                json!({"floppy_dirs": [d("a.iso")]}),
                "no such directory".into(),
                "",
            ),
            (
                "cd file",
                "cd",
                json!({"cd_files": [d("nope")]}),
                "cd_files entry".into(),
                "",
            ),
            // bootcommand/config_test.go and the build's own parse
            (
                "boot: negative wait",
                "boot",
                json!({"boot_command": ["<wait-1m>"]}),
                "must be positive".into(),
                "",
            ),
            (
                "boot: waitFor 0s",
                "boot",
                json!({"boot_command": ["<waitFor \"x\" 0s>"]}),
                "invalid boot_command".into(),
                "",
            ),
            (
                "boot: untypeable",
                "boot",
                json!({"boot_command": ["\u{e9}"]}),
                "cannot type".into(),
                "",
            ),
            (
                "boot: unclosed template",
                "boot",
                json!({"boot_command": ["{{ .HTTPIP"]}),
                "without a closing".into(),
                "",
            ),
            (
                "boot: unknown value",
                "boot",
                json!({"boot_command": ["{{ .Nope }}"]}),
                "invalid boot_command".into(),
                "",
            ),
            (
                "boot: values",
                "boot",
                json!({"boot_command": ["http://{{ .HTTPIP }}:{{ .HTTPPort }}/{{ .Name }}<enter>"]}),
                "".into(),
                "",
            ),
            (
                "boot: unknown tag",
                "boot",
                json!({"boot_command": ["<foo>"]}),
                "".into(),
                "<foo>",
            ),
            (
                "TestBootConfigPrepare (both)",
                "boot",
                json!({"boot_command": ["a"], "boot_steps": [["b"]]}),
                "cannot both be set".into(),
                "",
            ),
            // Packer's qemu/virtualbox Prepare(): deprecated names
            (
                "ssh_host_port_min",
                "ports",
                json!({"ssh_host_port_min": 3000}),
                "".into(),
                "deprecated",
            ),
        ];
        for (case, group, options, error, warning) in cases {
            let g: Box<dyn Group> = match group {
                "comm" => Box::new(serde_json::from_value::<CommConfig>(options).unwrap()),
                "iso" => Box::new(serde_json::from_value::<IsoConfig>(options).unwrap()),
                "http" => Box::new(serde_json::from_value::<HttpConfig>(options).unwrap()),
                "floppy" => Box::new(serde_json::from_value::<FloppyConfig>(options).unwrap()),
                "cd" => Box::new(serde_json::from_value::<CdConfig>(options).unwrap()),
                "boot" => Box::new(serde_json::from_value::<BootConfig>(options).unwrap()),
                "ports" => Box::new(serde_json::from_value::<HostPortConfig>(options).unwrap()),
                other => panic!("{other}"),
            };
            let problems: Vec<String> = g.problems().into_iter().map(|(_, m)| m).collect();
            if error.is_empty() {
                assert!(problems.is_empty(), "{case}: {problems:?}");
            } else {
                assert!(
                    problems.len() == 1 && problems[0].contains(&error),
                    "{case}: expected {error:?}, got {problems:?}"
                );
            }
            let warnings: Vec<String> = g.warnings().into_iter().map(|(_, m)| m).collect();
            if warning.is_empty() {
                assert!(warnings.is_empty(), "{case}: {warnings:?}");
            } else {
                assert!(
                    warnings.iter().any(|w| w.contains(warning)),
                    "{case}: expected a warning {warning:?}, got {warnings:?}"
                );
            }
        }
    }
}
