//! Options of the provisioners kiln knows, with Packer's names and defaults. Meta-arguments
//! (`only`, `except`, `pause_before`, `max_retries`, `timeout`, `override`…) are handled by the
//! template loader and never reach these structs.

use super::weak::{self, GoDuration, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `shell`: run scripts in the guest over the communicator.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShellConfig {
    /// Commands, run as one script.
    #[serde(deserialize_with = "weak::string_list")]
    pub inline: Vec<String>,
    /// First line of the inline script.
    pub inline_shebang: String,
    /// One local script.
    pub script: Option<String>,
    /// Local scripts, run in order.
    #[serde(deserialize_with = "weak::string_list")]
    pub scripts: Vec<String>,
    /// `KEY=value` pairs.
    #[serde(deserialize_with = "weak::string_list")]
    pub environment_vars: Vec<String>,
    /// Environment as a map (wins over `environment_vars`).
    pub env: BTreeMap<String, String>,
    /// Format of one variable in `{{.Vars}}`.
    pub env_var_format: Option<String>,
    /// Put the variables in a file sourced by the script.
    #[serde(deserialize_with = "weak::bool")]
    pub use_env_var_file: bool,
    /// How to run a script (`{{.Path}}`, `{{.Vars}}`, `{{.EnvVarFile}}`); the default
    /// depends on `use_env_var_file` (see [`ShellConfig::execute_command`]).
    #[serde(rename = "execute_command")]
    pub execute_command_raw: Option<String>,
    /// Upload folder in the guest.
    pub remote_folder: String,
    /// Upload file name in the guest.
    pub remote_file: Option<String>,
    /// Full upload path in the guest.
    pub remote_path: Option<String>,
    /// Leave the uploaded script in place.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_clean: bool,
    /// How long to retry starting the script (the guest may be rebooting).
    pub start_retry_timeout: GoDuration,
    /// The script may drop the connection (reboot) without failing.
    #[serde(deserialize_with = "weak::bool")]
    pub expect_disconnect: bool,
    /// Exit codes that count as success.
    pub valid_exit_codes: Vec<i64>,
    /// Wait after the scripts ran.
    pub pause_after: Option<GoDuration>,
    /// Upload scripts as binaries (no line-ending conversion).
    #[serde(deserialize_with = "weak::bool")]
    pub binary: bool,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            inline: Vec::new(),
            inline_shebang: "/bin/sh -e".into(),
            script: None,
            scripts: Vec::new(),
            environment_vars: Vec::new(),
            env: BTreeMap::new(),
            env_var_format: None,
            use_env_var_file: false,
            execute_command_raw: None,
            remote_folder: "/tmp".into(),
            remote_file: None,
            remote_path: None,
            skip_clean: false,
            start_retry_timeout: GoDuration::secs(300),
            expect_disconnect: false,
            valid_exit_codes: vec![0],
            pause_after: None,
            binary: false,
        }
    }
}

/// `file`: upload or download files.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// One source path.
    pub source: Option<String>,
    /// Several sources; the destination must then end in `/`.
    pub sources: Vec<String>,
    /// Inline content written to the destination.
    pub content: Option<String>,
    /// Where the files go.
    pub destination: Option<String>,
    /// `upload` or `download`.
    pub direction: String,
    /// The source is created during the build (do not check it exists now).
    #[serde(deserialize_with = "weak::bool")]
    pub generated: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            source: None,
            sources: Vec::new(),
            content: None,
            destination: None,
            direction: "upload".into(),
            generated: false,
        }
    }
}

/// `shell-local` (provisioner and post-processor): run commands on the host.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShellLocalConfig {
    /// A single command.
    pub command: Option<String>,
    /// Commands, run as one script.
    #[serde(deserialize_with = "weak::string_list")]
    pub inline: Vec<String>,
    /// First line of the inline script.
    pub inline_shebang: Option<String>,
    /// One local script.
    pub script: Option<String>,
    /// Local scripts.
    #[serde(deserialize_with = "weak::string_list")]
    pub scripts: Vec<String>,
    /// `KEY=value` pairs.
    #[serde(deserialize_with = "weak::string_list")]
    pub environment_vars: Vec<String>,
    /// Environment as a map.
    pub env: BTreeMap<String, String>,
    /// Format of one variable in `{{.Vars}}`.
    pub env_var_format: Option<String>,
    /// How to run the script: a list (`["/bin/sh", "-c", "{{.Vars}} {{.Script}}"]`).
    #[serde(deserialize_with = "weak::string_list")]
    pub execute_command: Vec<String>,
    /// Host OSes to run on (`linux`, `darwin`, `windows`).
    #[serde(deserialize_with = "weak::string_list")]
    pub only_on: Vec<String>,
    /// Extension of the temporary script.
    pub tempfile_extension: Option<String>,
    /// Convert paths for WSL.
    #[serde(deserialize_with = "weak::bool")]
    pub use_linux_pathing: bool,
    /// Exit codes that count as success.
    pub valid_exit_codes: Vec<i64>,
    /// Keep the temporary script.
    #[serde(deserialize_with = "weak::bool")]
    pub keep_input_artifact: bool,
}

impl Default for ShellLocalConfig {
    fn default() -> Self {
        Self {
            command: None,
            inline: Vec::new(),
            inline_shebang: None,
            script: None,
            scripts: Vec::new(),
            environment_vars: Vec::new(),
            env: BTreeMap::new(),
            env_var_format: None,
            execute_command: Vec::new(),
            only_on: Vec::new(),
            tempfile_extension: None,
            use_linux_pathing: false,
            valid_exit_codes: vec![0],
            keep_input_artifact: false,
        }
    }
}

/// `breakpoint`: pause the build until Enter is pressed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakpointConfig {
    /// Skip the pause.
    #[serde(deserialize_with = "weak::bool")]
    pub disable: bool,
    /// Shown while paused.
    pub note: Option<String>,
}

/// `sleep`: wait, then go on (Packer's `sleep` provisioner).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SleepConfig {
    /// How long (`10s`, `1m30s`).
    pub duration: GoDuration,
}

impl SleepConfig {
    /// Packer's check: a duration that goes back in time is refused.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        if self.duration.negative {
            vec![(
                "duration",
                format!("duration {} is negative", self.duration),
            )]
        } else {
            Vec::new()
        }
    }
}

/// `ansible`: run a playbook from the host against the guest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnsibleConfig {
    /// The playbook.
    pub playbook_file: Option<String>,
    /// The `ansible-playbook` command.
    pub command: String,
    /// Extra arguments to `ansible-playbook`.
    #[serde(deserialize_with = "weak::string_list")]
    pub extra_arguments: Vec<String>,
    /// `KEY=value` for ansible's environment.
    pub ansible_env_vars: Vec<String>,
    /// Extra ssh arguments for ansible.
    pub ansible_ssh_extra_args: Vec<String>,
    /// Inventory groups of the host.
    pub groups: Vec<String>,
    /// Empty inventory groups.
    pub empty_groups: Vec<String>,
    /// Inventory name of the host.
    pub host_alias: String,
    /// Remote user.
    pub user: Option<String>,
    /// Port of the local SSH proxy.
    #[serde(deserialize_with = "weak::opt_int")]
    pub local_port: Option<u16>,
    /// Host key for the proxy.
    pub ssh_host_key_file: Option<String>,
    /// Authorized key for the proxy.
    pub ssh_authorized_key_file: Option<String>,
    /// SFTP server command in the guest.
    pub sftp_command: Option<String>,
    /// Do not run `ansible --version`.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_version_check: bool,
    /// Use SFTP instead of SCP.
    #[serde(deserialize_with = "weak::bool")]
    pub use_sftp: bool,
    /// Where to write the inventory.
    pub inventory_directory: Option<String>,
    /// An existing inventory.
    pub inventory_file: Option<String>,
    /// A template for the inventory.
    pub inventory_file_template: Option<String>,
    /// Keep the generated inventory.
    #[serde(deserialize_with = "weak::bool")]
    pub keep_inventory_file: bool,
    /// `requirements.yml` for ansible-galaxy.
    pub galaxy_file: Option<String>,
    /// The `ansible-galaxy` command.
    pub galaxy_command: String,
    /// Reinstall roles.
    #[serde(deserialize_with = "weak::bool")]
    pub galaxy_force_install: bool,
    /// Reinstall roles with dependencies.
    #[serde(deserialize_with = "weak::bool")]
    pub galaxy_force_with_deps: bool,
    /// Where galaxy installs roles.
    pub roles_path: Option<String>,
    /// Where galaxy installs collections.
    pub collections_path: Option<String>,
    /// Proxy the connection through kiln (default: on for SSH).
    #[serde(deserialize_with = "weak::opt_bool")]
    pub use_proxy: Option<bool>,
    /// Use HTTP for WinRM.
    #[serde(deserialize_with = "weak::bool")]
    pub ansible_winrm_use_http: bool,
}

impl Default for AnsibleConfig {
    fn default() -> Self {
        Self {
            playbook_file: None,
            command: "ansible-playbook".into(),
            extra_arguments: Vec::new(),
            ansible_env_vars: Vec::new(),
            ansible_ssh_extra_args: Vec::new(),
            groups: Vec::new(),
            empty_groups: Vec::new(),
            host_alias: "default".into(),
            user: None,
            local_port: None,
            ssh_host_key_file: None,
            ssh_authorized_key_file: None,
            sftp_command: None,
            skip_version_check: false,
            use_sftp: false,
            inventory_directory: None,
            inventory_file: None,
            inventory_file_template: None,
            keep_inventory_file: false,
            galaxy_file: None,
            galaxy_command: "ansible-galaxy".into(),
            galaxy_force_install: false,
            galaxy_force_with_deps: false,
            roles_path: None,
            collections_path: None,
            use_proxy: None,
            ansible_winrm_use_http: false,
        }
    }
}

/// `ansible-local`: run a playbook inside the guest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnsibleLocalConfig {
    /// The playbook.
    pub playbook_file: Option<String>,
    /// Several playbooks.
    pub playbook_files: Vec<String>,
    /// A directory uploaded with the playbook.
    pub playbook_dir: Option<String>,
    /// Extra directories uploaded.
    pub playbook_paths: Vec<String>,
    /// The command run in the guest.
    pub command: String,
    /// Extra arguments.
    #[serde(deserialize_with = "weak::string_list")]
    pub extra_arguments: Vec<String>,
    /// `group_vars` directory.
    pub group_vars: Option<String>,
    /// `host_vars` directory.
    pub host_vars: Option<String>,
    /// Inventory file.
    pub inventory_file: Option<String>,
    /// Inventory groups.
    pub inventory_groups: Vec<String>,
    /// `requirements.yml` for ansible-galaxy.
    pub galaxy_file: Option<String>,
    /// The `ansible-galaxy` command.
    pub galaxy_command: String,
    /// Role directories uploaded.
    pub role_paths: Vec<String>,
    /// Collection directories uploaded.
    pub collection_paths: Vec<String>,
    /// Upload directory in the guest.
    pub staging_directory: Option<String>,
    /// Remove the staging directory afterwards.
    #[serde(deserialize_with = "weak::bool")]
    pub clean_staging_directory: bool,
}

impl Default for AnsibleLocalConfig {
    fn default() -> Self {
        Self {
            playbook_file: None,
            playbook_files: Vec::new(),
            playbook_dir: None,
            playbook_paths: Vec::new(),
            command: "ANSIBLE_FORCE_COLOR=1 PYTHONUNBUFFERED=1 ansible-playbook".into(),
            extra_arguments: Vec::new(),
            group_vars: None,
            host_vars: None,
            inventory_file: None,
            inventory_groups: Vec::new(),
            galaxy_file: None,
            galaxy_command: "ansible-galaxy".into(),
            role_paths: Vec::new(),
            collection_paths: Vec::new(),
            staging_directory: None,
            clean_staging_directory: false,
        }
    }
}

/// `powershell` (accepted for validation).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowershellConfig {
    /// Commands.
    #[serde(deserialize_with = "weak::string_list")]
    pub inline: Vec<String>,
    /// One script.
    pub script: Option<String>,
    /// Scripts.
    #[serde(deserialize_with = "weak::string_list")]
    pub scripts: Vec<String>,
    /// `KEY=value` pairs.
    #[serde(deserialize_with = "weak::string_list")]
    pub environment_vars: Vec<String>,
    /// Environment as a map.
    pub env: BTreeMap<String, String>,
    /// Format of one variable.
    pub env_var_format: Option<String>,
    /// Format of one variable for elevated runs.
    pub elevated_env_var_format: Option<String>,
    /// Use `pwsh` instead of `powershell`.
    #[serde(deserialize_with = "weak::bool")]
    pub use_pwsh: bool,
    /// How to run a script.
    pub execute_command: Option<String>,
    /// How to run a script elevated.
    pub elevated_execute_command: Option<String>,
    /// Elevated user.
    pub elevated_user: Option<String>,
    /// Elevated user's password (secret).
    pub elevated_password: Option<Secret>,
    /// Upload path.
    pub remote_path: Option<String>,
    /// How long to retry starting.
    pub start_retry_timeout: Option<GoDuration>,
    /// Exit codes that count as success.
    pub valid_exit_codes: Vec<i64>,
    /// Wait after the scripts ran.
    pub pause_after: Option<GoDuration>,
    /// PowerShell execution policy.
    pub execution_policy: Option<String>,
    /// Leave the uploaded script in place.
    #[serde(deserialize_with = "weak::bool")]
    pub skip_clean: bool,
    /// `Set-PSDebug -Trace` level.
    #[serde(deserialize_with = "weak::opt_int")]
    pub debug_mode: Option<i64>,
}

/// `windows-restart` (accepted for validation).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowsRestartConfig {
    /// Command that restarts the guest.
    pub restart_command: Option<String>,
    /// Command that succeeds once the guest is back.
    pub restart_check_command: Option<String>,
    /// How long to wait for the restart.
    pub restart_timeout: Option<GoDuration>,
    /// Wait for pending-reboot registry keys to clear.
    #[serde(deserialize_with = "weak::bool")]
    pub check_registry: bool,
    /// Registry keys to watch.
    pub registry_keys: Vec<String>,
}

/// `windows-shell` (accepted for validation).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowsShellConfig {
    /// Commands.
    #[serde(deserialize_with = "weak::string_list")]
    pub inline: Vec<String>,
    /// One script.
    pub script: Option<String>,
    /// Scripts.
    #[serde(deserialize_with = "weak::string_list")]
    pub scripts: Vec<String>,
    /// `KEY=value` pairs.
    #[serde(deserialize_with = "weak::string_list")]
    pub environment_vars: Vec<String>,
    /// Environment as a map.
    pub env: BTreeMap<String, String>,
    /// How to run a script.
    pub execute_command: Option<String>,
    /// Upload path.
    pub remote_path: Option<String>,
    /// How long to retry starting.
    pub start_retry_timeout: Option<GoDuration>,
    /// Exit codes that count as success.
    pub valid_exit_codes: Vec<i64>,
    /// Wait after the scripts ran.
    pub pause_after: Option<GoDuration>,
}

/// Exactly one of inline / script / scripts (and `command` for shell-local).
fn one_source(
    inline: bool,
    script: bool,
    scripts: bool,
    what: &str,
) -> Vec<(&'static str, String)> {
    match [inline, script, scripts].iter().filter(|x| **x).count() {
        1 => Vec::new(),
        0 => vec![(
            "inline",
            format!("{what} needs one of inline, script or scripts"),
        )],
        _ => vec![(
            "inline",
            format!("{what} takes only one of inline, script or scripts"),
        )],
    }
}

/// Local files that must exist when the template is validated (paths relative to the working
/// directory, as Packer reads them).
fn missing_files<'a>(
    key: &'static str,
    paths: impl IntoIterator<Item = &'a String>,
) -> Vec<(&'static str, String)> {
    paths
        .into_iter()
        .filter(|p| !std::path::Path::new(p.as_str()).exists())
        .map(|p| (key, format!("file {p:?} does not exist (relative paths are read from the working directory)")))
        .collect()
}

impl ShellConfig {
    /// `execute_command`, or Packer's default for the chosen way of passing variables.
    pub fn execute_command(&self) -> String {
        match (&self.execute_command_raw, self.use_env_var_file) {
            (Some(c), _) => c.clone(),
            (None, false) => "chmod +x {{.Path}}; {{.Vars}} {{.Path}}".into(),
            (None, true) => "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}".into(),
        }
    }

    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = one_source(
            !self.inline.is_empty(),
            self.script.is_some(),
            !self.scripts.is_empty(),
            "the shell provisioner",
        );
        out.extend(missing_files("script", &self.script));
        out.extend(missing_files("scripts", &self.scripts));
        out.extend(bad_env_vars(&self.environment_vars));
        out
    }
}

/// `environment_vars` entries that are not `NAME=value` (Packer rejects `=foo` and `foo`).
fn bad_env_vars(vars: &[String]) -> Vec<(&'static str, String)> {
    vars.iter()
        .filter(|kv| kv.split_once('=').is_none_or(|(k, _)| k.is_empty()))
        .map(|kv| {
            (
                "environment_vars",
                format!("environment variable not in format 'key=value': {kv:?}"),
            )
        })
        .collect()
}

impl ShellLocalConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let n = [
            self.command.is_some(),
            !self.inline.is_empty(),
            self.script.is_some(),
            !self.scripts.is_empty(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        let mut out = match n {
            1 => Vec::new(),
            0 => vec![(
                "inline",
                "shell-local needs one of command, inline, script or scripts".to_owned(),
            )],
            _ => vec![(
                "inline",
                "shell-local takes only one of command, inline, script or scripts".to_owned(),
            )],
        };
        out.extend(missing_files("script", &self.script));
        out.extend(missing_files("scripts", &self.scripts));
        out.extend(bad_env_vars(&self.environment_vars));
        out
    }
}

impl FileConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.destination.is_none() {
            out.push((
                "destination",
                "the file provisioner needs a destination".to_owned(),
            ));
        }
        let n = [
            self.source.is_some(),
            !self.sources.is_empty(),
            self.content.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            out.push((
                "source",
                "the file provisioner needs exactly one of source, sources or content".to_owned(),
            ));
        }
        if !self.sources.is_empty() && !self.destination.as_deref().unwrap_or("").ends_with('/') {
            out.push((
                "destination",
                "with sources, the destination must be a directory ending in /".to_owned(),
            ));
        }
        if !["upload", "download"].contains(&self.direction.as_str()) {
            out.push((
                "direction",
                "direction must be upload or download".to_owned(),
            ));
        }
        if self.direction == "upload" && !self.generated {
            out.extend(missing_files("source", &self.source));
            out.extend(missing_files("sources", &self.sources));
        }
        out
    }
}

impl AnsibleConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        match &self.playbook_file {
            None => vec![(
                "playbook_file",
                "the ansible provisioner needs a playbook_file".to_owned(),
            )],
            Some(p) => missing_files("playbook_file", [p]),
        }
    }
}

impl AnsibleLocalConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        if self.playbook_file.is_none() && self.playbook_files.is_empty() {
            return vec![(
                "playbook_file",
                "ansible-local needs playbook_file or playbook_files".to_owned(),
            )];
        }
        Vec::new()
    }
}

impl PowershellConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = one_source(
            !self.inline.is_empty(),
            self.script.is_some(),
            !self.scripts.is_empty(),
            "the powershell provisioner",
        );
        out.extend(missing_files("script", &self.script));
        out.extend(missing_files("scripts", &self.scripts));
        out
    }
}

impl WindowsShellConfig {
    /// Checks Packer makes after decoding.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        one_source(
            !self.inline.is_empty(),
            self.script.is_some(),
            !self.scripts.is_empty(),
            "the windows-shell provisioner",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shell_defaults_and_checks() {
        let c: ShellConfig =
            serde_json::from_value(json!({"inline": ["true"], "valid_exit_codes": [0, 143]}))
                .unwrap();
        assert_eq!(
            c.execute_command(),
            "chmod +x {{.Path}}; {{.Vars}} {{.Path}}"
        );
        let c: ShellConfig =
            serde_json::from_value(json!({"inline": ["true"], "use_env_var_file": true})).unwrap();
        assert_eq!(
            c.execute_command(),
            "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}"
        );
        assert!(c.problems().is_empty());
        let c: ShellConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(
            c.problems()[0].1,
            "the shell provisioner needs one of inline, script or scripts"
        );
    }

    #[test]
    fn missing_scripts_are_reported() {
        let c: ShellConfig =
            serde_json::from_value(json!({"scripts": ["Cargo.toml", "no/such/script.sh"]}))
                .unwrap();
        let p = c.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "scripts");
        assert!(p[0]
            .1
            .starts_with("file \"no/such/script.sh\" does not exist"));
    }

    #[test]
    fn file_needs_a_trailing_slash_with_sources() {
        let c: FileConfig =
            serde_json::from_value(json!({"sources": ["a", "b"], "destination": "/tmp"})).unwrap();
        assert_eq!(c.problems()[0].0, "destination");
    }
}
