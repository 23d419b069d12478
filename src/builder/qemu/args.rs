//! QEMU's command line: kiln's defaults from the typed config (as Packer's builder builds
//! them), then `qemuargs` merged over them as Packer does: a switch the user gives replaces
//! every default switch of that name, and the user's switches come last.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::qemu::QemuConfig;

/// Everything the command line depends on that is decided while the build runs.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    /// `vm_name`.
    pub vm_name: String,
    /// The main disk and the additional ones.
    pub disks: Vec<PathBuf>,
    /// The installer ISO (not for `disk_image` builds).
    pub iso: Option<PathBuf>,
    /// The `cd_files`/`cd_content` ISO.
    pub cd: Option<PathBuf>,
    /// `-machine accel=`.
    pub accel: String,
    /// Host port forwarded to the guest's SSH port (None with `skip_nat_mapping`).
    pub ssh_host_port: Option<u16>,
    /// Guest port for the forward (`ssh_port`).
    pub ssh_guest_port: u16,
    /// VNC display port (5900 + display).
    pub vnc_port: Option<u16>,
    /// `vnc_use_password`: the random password, set over QMP once QEMU runs.
    pub vnc_password: Option<String>,
    /// QMP socket.
    pub qmp_socket: PathBuf,
    /// Serial console log (kiln's `<waitFor>` reads it).
    pub serial_log: PathBuf,
    /// Show no window.
    pub headless: bool,
    /// The build's copy of the UEFI variables (`efivars.fd` in the output directory).
    pub efivars: Option<PathBuf>,
}

/// The switches and their values, in order. Each entry is one switch with its arguments.
pub fn command_line(
    cfg: &QemuConfig,
    rt: &Runtime,
    values: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut defaults: Vec<Vec<String>> = Vec::new();
    let mut push = |parts: &[&str]| defaults.push(parts.iter().map(|s| (*s).to_owned()).collect());
    push(&["-name", &rt.vm_name]);
    push(&[
        "-machine",
        &format!("type={},accel={}", cfg.machine_type, rt.accel),
    ]);
    match (cfg.net_bridge.as_deref(), rt.ssh_host_port) {
        (Some(bridge), _) => push(&["-netdev", &format!("bridge,id=user.0,br={bridge}")]),
        (None, Some(port)) => push(&[
            "-netdev",
            &format!("user,id=user.0,hostfwd=tcp::{port}-:{}", rt.ssh_guest_port),
        ]),
        (None, None) => push(&["-netdev", "user,id=user.0"]),
    }
    push(&["-device", &format!("{},netdev=user.0", cfg.net_device)]);
    for (i, disk) in rt.disks.iter().enumerate() {
        let mut d = format!(
            "file={},if={},cache={},discard={},format={}",
            disk.display(),
            drive_interface(&cfg.disk_interface),
            cfg.disk_cache,
            cfg.disk_discard,
            cfg.format
        );
        if cfg.disk_detect_zeroes != "off" {
            d.push_str(&format!(",detect-zeroes={}", cfg.disk_detect_zeroes));
        }
        if i == 0 && cfg.disk_image {
            d.push_str(",index=0");
        }
        push(&["-drive", &d]);
    }
    if let Some(iso) = &rt.iso {
        match cfg.cdrom_interface.as_deref() {
            None | Some("") => push(&["-cdrom", &iso.display().to_string()]),
            Some(i) => push(&[
                "-drive",
                &format!("file={},media=cdrom,if={i}", iso.display()),
            ]),
        }
    }
    if let Some(cd) = &rt.cd {
        push(&[
            "-drive",
            &format!("file={},media=cdrom,index=3", cd.display()),
        ]);
    }
    // Boot the CD once, then the disk: the installer's reboot lands in the installed system.
    push(&["-boot", if cfg.disk_image { "c" } else { "once=d" }]);
    push(&["-m", &format!("{}M", cfg.memory)]);
    if let Some(cpus) = smp(cfg) {
        push(&["-smp", &cpus]);
    }
    if let Some(model) = &cfg.cpu_model {
        push(&["-cpu", model]);
    }
    if let Some(port) = rt.vnc_port {
        let mut vnc = format!("{}:{}", cfg.vnc_bind_address, port.saturating_sub(5900));
        if rt.vnc_password.is_some() {
            vnc.push_str(",password=on");
        }
        push(&["-vnc", &vnc]);
    }
    if rt.headless {
        push(&["-display", "none"]);
    } else if let Some(d) = &cfg.display {
        push(&["-display", d]);
    }
    if let Some(vga) = &cfg.vga {
        push(&["-vga", vga]);
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", rt.qmp_socket.display()),
    ]);
    push(&["-serial", &format!("file:{}", rt.serial_log.display())]);
    if cfg.efi_boot {
        let code = cfg
            .efi_firmware_code
            .as_deref()
            .unwrap_or("/usr/share/OVMF/OVMF_CODE.fd");
        push(&[
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={code}"),
        ]);
    }

    let user: Vec<Vec<String>> = cfg
        .qemuargs
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.iter()
                .map(|s| boot_commands::render(s, values).unwrap_or_else(|_| s.clone()))
                .collect()
        })
        .collect();
    let replaced: BTreeSet<&str> = user.iter().map(|a| a[0].as_str()).collect();
    defaults
        .into_iter()
        .filter(|a| !replaced.contains(a[0].as_str()))
        .chain(user.iter().cloned())
        .flatten()
        .collect()
}

/// `-drive if=` for a `disk_interface`; SCSI and NVMe kinds become `none` plus a device in
/// Packer, which kiln leaves to `qemuargs` for now, so they map to their closest `if=`.
fn drive_interface(i: &str) -> &str {
    match i {
        "virtio-scsi" | "scsi" => "scsi",
        "" => "virtio",
        other => other,
    }
}

fn smp(cfg: &QemuConfig) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(c) = cfg.cpus {
        parts.push(format!("cpus={c}"));
    }
    for (k, v) in [
        ("sockets", cfg.sockets),
        ("cores", cfg.cores),
        ("threads", cfg.threads),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> Runtime {
        Runtime {
            vm_name: "vm".into(),
            disks: vec!["out/vm".into()],
            iso: Some("a.iso".into()),
            accel: "tcg".into(),
            ssh_host_port: Some(2222),
            ssh_guest_port: 22,
            vnc_port: Some(5901),
            qmp_socket: "/t/qmp".into(),
            serial_log: "/t/serial".into(),
            headless: true,
            ..Runtime::default()
        }
    }

    fn switch<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn defaults_like_packer() {
        let cfg = QemuConfig::default();
        let a = command_line(&cfg, &rt(), &BTreeMap::new());
        assert_eq!(switch(&a, "-machine"), ["type=pc,accel=tcg"]);
        assert_eq!(
            switch(&a, "-netdev"),
            ["user,id=user.0,hostfwd=tcp::2222-:22"]
        );
        assert_eq!(switch(&a, "-device"), ["virtio-net,netdev=user.0"]);
        assert_eq!(
            switch(&a, "-drive"),
            ["file=out/vm,if=virtio,cache=writeback,discard=ignore,format=qcow2"]
        );
        assert_eq!(switch(&a, "-cdrom"), ["a.iso"]);
        assert_eq!(switch(&a, "-boot"), ["once=d"]);
        assert_eq!(switch(&a, "-m"), ["512M"]);
        assert_eq!(switch(&a, "-vnc"), ["127.0.0.1:1"]);
        assert_eq!(switch(&a, "-display"), ["none"]);
    }

    #[test]
    fn qemuargs_replace_switches_and_render_values() {
        let cfg = QemuConfig {
            qemuargs: vec![
                vec!["-m".into(), "1024M".into()],
                vec!["-device".into(), "e1000,netdev=user.0".into()],
                vec!["-smbios".into(), "type=1,serial={{ .Name }}".into()],
            ],
            ..QemuConfig::default()
        };
        let values = BTreeMap::from([("Name".to_owned(), "vm".to_owned())]);
        let a = command_line(&cfg, &rt(), &values);
        assert_eq!(switch(&a, "-m"), ["1024M"]);
        assert_eq!(switch(&a, "-device"), ["e1000,netdev=user.0"]);
        assert_eq!(switch(&a, "-smbios"), ["type=1,serial=vm"]);
        assert_eq!(a.iter().rev().nth(1).map(String::as_str), Some("-smbios"));
    }
}
