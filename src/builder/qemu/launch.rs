//! QEMU's launch plan and command line. [`LaunchPlan`] is decided once, from the template's
//! options and what earlier steps set in the build context (disk, CDs, floppy, ports,
//! accelerator), and never changes afterwards. [`command_line`] turns it into kiln's default
//! switches (as Packer's builder builds them), then merges `qemuargs` over them as Packer does:
//! a switch the user gives replaces every default switch of that name, and the user's switches
//! come last.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::qemu::QemuConfig;
use crate::pipeline::{BuildContext, StepError};

/// Everything the command line depends on that is decided while the build runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchPlan {
    /// `vm_name`.
    pub vm_name: String,
    /// The main disk and the additional ones, by their final names (QEMU opens their
    /// [`partial`] names).
    pub disks: Vec<PathBuf>,
    /// Their format: `format`, or qcow2 when they are overlays on a cached layer.
    pub disk_format: String,
    /// The machine resumes from a layer of the layer cache (its RAM and devices come from the
    /// layer's `memory`, so every device is as when the layer was saved): `-incoming defer`.
    pub from_layer: bool,
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
    /// A second QMP socket, kept connected for QEMU's events (a QMP socket serves one client
    /// at a time, and the first is for commands).
    pub event_socket: PathBuf,
    /// The socket QEMU serves the guest's serial console on; kiln copies it to `serial_log`
    /// with secrets redacted.
    pub serial_socket: PathBuf,
    /// Serial console log (kiln's `<waitFor>` reads it).
    pub serial_log: PathBuf,
    /// Show no window.
    pub headless: bool,
    /// The build's copy of the UEFI variables (`efivars.fd` in the output directory).
    pub efivars: Option<PathBuf>,
    /// The `floppy_files`/`floppy_dirs`/`floppy_content` image.
    pub floppy: Option<PathBuf>,
    /// The default NIC's MAC (set with `net_bridge`, where QEMU's fixed default would collide).
    pub mac: Option<String>,
    /// The control socket of the build's swtpm (`vtpm`).
    pub tpm_socket: Option<PathBuf>,
}

impl LaunchPlan {
    /// The plan for `cfg` from what the build's earlier steps set in `ctx`; `temp` is the
    /// build's private directory (QMP socket, serial log) and `has_display` whether a window
    /// can be shown.
    pub fn new(
        cfg: &QemuConfig,
        ctx: &BuildContext,
        temp: &Path,
        has_display: bool,
    ) -> Result<Self, StepError> {
        let out_dir = ctx.require_output_dir()?;
        let vm_name = ctx.require_vm_name()?.to_owned();
        let accel = ctx
            .facts
            .accelerator
            .clone()
            .ok_or(StepError::MissingState {
                key: "the accelerator",
                producer: "choose accelerator",
            })?;
        // kiln always talks QMP; `qmp_enable` and `qmp_socket_path` only say where the socket
        // is, for the user's own tools (Packer's default: `<output_directory>/<vm_name>.monitor`).
        let qmp_socket = match (&cfg.qmp_socket_path, cfg.qmp_enable) {
            (Some(p), _) => PathBuf::from(p),
            (None, true) => out_dir.join(format!("{vm_name}.monitor")),
            (None, false) => temp.join("qmp.sock"),
        };
        let from_layer = ctx.from_layer.is_some();
        let iso = if cfg.disk_image {
            None
        } else {
            Some(ctx.require_iso()?.to_owned())
        };
        Ok(Self {
            disks: disks(cfg, out_dir, &vm_name),
            disk_format: if from_layer {
                "qcow2".to_owned()
            } else {
                cfg.format.clone()
            },
            from_layer,
            iso,
            cd: ctx.cd_path.clone(),
            accel,
            ssh_host_port: ctx.ssh_host_port,
            ssh_guest_port: cfg.comm.ssh_port,
            vnc_port: ctx.vnc.as_ref().map(|v| v.port),
            vnc_password: ctx.vnc.as_ref().and_then(|v| v.password.clone()),
            qmp_socket,
            event_socket: temp.join("events.sock"),
            serial_socket: temp.join("serial.sock"),
            serial_log: temp.join("serial.log"),
            headless: cfg.headless || !has_display,
            efivars: cfg.efi_enabled().then(|| out_dir.join("efivars.fd")),
            floppy: ctx.floppy_path.clone(),
            mac: cfg.net_bridge.as_ref().map(|_| super::bridge::random_mac()),
            tpm_socket: ctx.tpm_socket.clone(),
            vm_name,
        })
    }
}

/// Where `disk` is while the build runs: `<disk>.partial`, renamed to `disk` by the finish
/// disk step, so that a build that fails, is cancelled or is killed never leaves an unfinished
/// disk at the name of a finished one.
pub fn partial(disk: &Path) -> PathBuf {
    let mut p = disk.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// The main disk `<output_directory>/<vm_name>` and the additional ones, `<vm_name>-1`, `-2`, ….
pub fn disks(cfg: &QemuConfig, out_dir: &Path, vm_name: &str) -> Vec<PathBuf> {
    std::iter::once(out_dir.join(vm_name))
        .chain((1..=cfg.disk_additional_size.len()).map(|i| out_dir.join(format!("{vm_name}-{i}"))))
        .collect()
}

/// The switches and their values, in order, ready for `Command::args`; fails when a
/// `qemuargs` value is not a valid template.
pub fn command_line(
    cfg: &QemuConfig,
    rt: &LaunchPlan,
    values: &BTreeMap<String, String>,
) -> Result<Vec<String>, boot_commands::RenderError> {
    let mut user = user_args(cfg, values)?;
    // A template's own `-drive` names the disk by its final name (Packer has no other): QEMU
    // must open the file the disk has while the build runs.
    for arg in user.iter_mut().filter(|a| a[0] == "-drive") {
        if let Some(value) = arg.get_mut(1) {
            *value = value
                .split(',')
                .map(|opt| {
                    rt.disks
                        .iter()
                        .find(|d| opt.strip_prefix("file=") == d.to_str())
                        .map_or_else(
                            || opt.to_owned(),
                            |d| format!("file={}", partial(d).display()),
                        )
                })
                .collect::<Vec<_>>()
                .join(",");
        }
    }
    Ok(merge(defaults(cfg, rt), user, &cfg.net_device))
}

/// kiln's default switches, each with its value (Packer's `getDefaultArgs`).
fn defaults(cfg: &QemuConfig, rt: &LaunchPlan) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut push = |parts: &[&str]| out.push(parts.iter().map(|s| (*s).to_owned()).collect());
    push(&["-name", &rt.vm_name]);
    if rt.accel == "none" {
        push(&["-machine", &format!("type={}", cfg.machine_type)]);
    } else {
        push(&[
            "-machine",
            &format!("type={},accel={}", cfg.machine_type, rt.accel),
        ]);
    }
    match (cfg.net_bridge.as_deref(), rt.ssh_host_port) {
        (Some(bridge), _) => push(&["-netdev", &format!("bridge,id=user.0,br={bridge}")]),
        // Loopback only: kiln connects there, and the guest's SSH (often with a well-known
        // password) is not offered to the network, as Packer's `tcp::port` would.
        (None, Some(port)) => push(&[
            "-netdev",
            &format!(
                "user,id=user.0,hostfwd=tcp:127.0.0.1:{port}-:{}",
                rt.ssh_guest_port
            ),
        ]),
        (None, None) => push(&["-netdev", "user,id=user.0"]),
    }
    let mac = rt
        .mac
        .as_ref()
        .map(|m| format!(",mac={m}"))
        .unwrap_or_default();
    push(&["-device", &format!("{},netdev=user.0{mac}", cfg.net_device)]);
    for d in storage(cfg, rt) {
        out.push(d);
    }
    let mut push = |parts: &[&str]| out.push(parts.iter().map(|s| (*s).to_owned()).collect());
    if let Some(floppy) = &rt.floppy {
        push(&["-fda", &floppy.display().to_string()]);
    }
    // Boot the CD once, then the disk: the installer's reboot lands in the installed system.
    push(&["-boot", if cfg.disk_image { "c" } else { "once=d" }]);
    if rt.from_layer {
        push(&["-incoming", "defer"]);
    }
    push(&["-m", &format!("{}M", cfg.memory)]);
    push(&["-smp", &smp(cfg)]);
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
    } else if let Some(d) = cfg.display.as_deref().filter(|d| *d != "none") {
        push(&["-display", d]);
    } else if !cfg.use_default_display {
        push(&["-display", "gtk"]);
    }
    if let Some(vga) = &cfg.vga {
        push(&["-vga", vga]);
    }
    if let (Some(fw), false) = (&cfg.firmware, cfg.use_pflash.unwrap_or(false)) {
        push(&["-bios", fw]);
    }
    if let Some(tpm) = &rt.tpm_socket {
        push(&[
            "-chardev",
            &format!("socket,id=vtpm,path={}", tpm.display()),
        ]);
        push(&["-tpmdev", "emulator,id=tpm0,chardev=vtpm"]);
        push(&["-device", &format!("{},tpmdev=tpm0", cfg.tpm_device_type())]);
    }
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", rt.qmp_socket.display()),
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", rt.event_socket.display()),
    ]);
    // Not `-serial file:`: the console can echo what the boot command typed (a password in a
    // preseed URL), so kiln writes the log itself, redacted.
    push(&[
        "-chardev",
        &format!(
            "socket,id=kiln-serial,path={},server=on,wait=off",
            rt.serial_socket.display()
        ),
    ]);
    push(&["-serial", "chardev:kiln-serial"]);
    out
}

/// The `-drive` and `-device` switches for the disks, the CDs and the firmware. Interfaces
/// QEMU's `-drive if=` knows are used directly; the others become a drive with `if=none`
/// and a device on a controller: `virtio-scsi` as Packer does it, `sata` on an AHCI
/// controller (Packer passes `if=sata`, which QEMU rejects), and kiln's `nvme`.
fn storage(cfg: &QemuConfig, rt: &LaunchPlan) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut controllers = BTreeSet::new();
    let mut controller = |out: &mut Vec<Vec<String>>, dev: &'static str| {
        if controllers.insert(dev) {
            out.push(vec!["-device".to_owned(), dev.to_owned()]);
        }
    };
    let opts = |disk: &std::path::Path| {
        let mut o = format!(
            "file={},cache={},discard={},format={}",
            partial(disk).display(),
            cfg.disk_cache,
            cfg.disk_discard,
            rt.disk_format
        );
        if cfg.disk_detect_zeroes != "off" {
            o.push_str(&format!(",detect-zeroes={}", cfg.disk_detect_zeroes));
        }
        o
    };
    for (i, disk) in rt.disks.iter().enumerate() {
        let (drive, device) = match cfg.disk_interface.as_str() {
            "virtio-scsi" => {
                controller(&mut out, "virtio-scsi-pci,id=scsi0");
                (
                    format!("if=none,id=drive{i},{}", opts(disk)),
                    Some(format!("scsi-hd,bus=scsi0.0,drive=drive{i}")),
                )
            }
            "sata" => {
                controller(&mut out, "ahci,id=ahci0");
                (
                    format!("if=none,id=drive{i},{}", opts(disk)),
                    Some(format!("ide-hd,bus=ahci0.{i},drive=drive{i}")),
                )
            }
            "nvme" => (
                format!("if=none,id=drive{i},{}", opts(disk)),
                Some(format!("nvme,serial=kiln{i},drive=drive{i}")),
            ),
            iface => {
                let mut d = format!("{},if={iface}", opts(disk));
                if i == 0 && cfg.disk_image {
                    d.push_str(",index=0");
                }
                (d, None)
            }
        };
        out.push(vec!["-drive".to_owned(), drive]);
        if let Some(mut dev) = device {
            // SeaBIOS boots the first hard disk it registers, and it registers controller
            // disks from parallel threads: without an explicit first place, an empty
            // additional disk can win the race (then a floppy's "press any key" stops the
            // boot). The CD still boots first while the main disk is empty.
            if i == 0 {
                dev.push_str(",bootindex=0");
            }
            out.push(vec!["-device".to_owned(), dev]);
        }
    }
    let cds = rt.iso.iter().chain(rt.cd.iter());
    for (i, cd) in cds.enumerate() {
        match cfg.cdrom_interface.as_deref() {
            None | Some("") => out.push(vec![
                "-drive".to_owned(),
                format!("file={},media=cdrom", cd.display()),
            ]),
            Some("virtio-scsi") => {
                controller(&mut out, "virtio-scsi-pci,id=scsi0");
                out.push(vec![
                    "-drive".to_owned(),
                    format!("file={},if=none,id=cdrom{i},media=cdrom", cd.display()),
                ]);
                out.push(vec![
                    "-device".to_owned(),
                    format!("scsi-cd,drive=cdrom{i}"),
                ]);
            }
            Some(iface) => out.push(vec![
                "-drive".to_owned(),
                format!(
                    "file={},if={iface},index={i},id=cdrom{i},media=cdrom",
                    cd.display()
                ),
            ]),
        }
    }
    if let (Some(fw), true) = (&cfg.firmware, cfg.use_pflash.unwrap_or(false)) {
        out.push(vec![
            "-drive".to_owned(),
            format!("file={fw},if=pflash,format=raw,readonly=on"),
        ]);
    }
    if cfg.efi_enabled() {
        out.push(vec![
            "-drive".to_owned(),
            format!(
                "file={},if=pflash,unit=0,format=raw,readonly=on",
                cfg.efi_code()
            ),
        ]);
        if let Some(vars) = &rt.efivars {
            out.push(vec![
                "-drive".to_owned(),
                format!("file={},if=pflash,unit=1,format=raw", vars.display()),
            ]);
        }
    }
    out
}

/// `qemuargs` with template values rendered. As in Packer, the strings after the switch are
/// joined without a separator into its one value (`["-netdev", "user,", "hostfwd=…"]`), and
/// a switch alone (`["-enable-kvm"]`) has none.
fn user_args(
    cfg: &QemuConfig,
    values: &BTreeMap<String, String>,
) -> Result<Vec<Vec<String>>, boot_commands::RenderError> {
    let mut out = Vec::new();
    for a in cfg.qemuargs.iter().filter(|a| !a.is_empty()) {
        let r = a
            .iter()
            .map(|s| boot_commands::render(s, values))
            .collect::<Result<Vec<String>, _>>()?;
        let value = r[1..].concat();
        out.push(if value.is_empty() {
            vec![r[0].clone()]
        } else {
            vec![r[0].clone(), value]
        });
    }
    Ok(out)
}

/// Packer's merge: a switch the user gives replaces every default switch of that name, and
/// the user's switches come after the defaults. When the user's `-device` switches drop the
/// network card, it is added back (Packer #6804), since the `-netdev` needs a device.
fn merge(defaults: Vec<Vec<String>>, user: Vec<Vec<String>>, net_device: &str) -> Vec<String> {
    let replaced: BTreeSet<&str> = user.iter().map(|a| a[0].as_str()).collect();
    let mut out: Vec<Vec<String>> = defaults
        .iter()
        .filter(|a| !replaced.contains(a[0].as_str()))
        .cloned()
        .chain(user.iter().cloned())
        .collect();
    let user_devices: Vec<&str> = user
        .iter()
        .filter(|a| a[0] == "-device")
        .filter_map(|a| a.get(1).map(String::as_str))
        .collect();
    if !user_devices.is_empty() && !user_devices.iter().any(|d| d.contains(net_device)) {
        out.push(vec![
            "-device".to_owned(),
            format!("{net_device},netdev=user.0"),
        ]);
    }
    out.into_iter().flatten().collect()
}

/// The number of virtual CPUs as Packer computes it: the topology's product (non-zero terms of
/// sockets, cores, threads) caps `cpus`; `cpus` alone leaves the topology to QEMU; nothing set
/// means 1.
pub fn cpu_count(cfg: &QemuConfig) -> u32 {
    let terms = [cfg.sockets, cfg.cores, cfg.threads];
    let any_topo = terms.iter().flatten().any(|&n| n > 0);
    let topo = terms.iter().flatten().filter(|&&n| n > 0).product::<u32>();
    let count = cfg.cpus.unwrap_or(0);
    if count == 0 || (any_topo && count > topo) {
        if any_topo {
            topo
        } else {
            1
        }
    } else {
        count
    }
}

/// `-smp`: [`cpu_count`] and the topology terms the template set.
fn smp(cfg: &QemuConfig) -> String {
    let mut out = cpu_count(cfg).to_string();
    for (k, v) in [
        ("sockets", cfg.sockets),
        ("cores", cfg.cores),
        ("threads", cfg.threads),
    ] {
        if let Some(v) = v.filter(|&v| v > 0) {
            out.push_str(&format!(",{k}={v}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> LaunchPlan {
        LaunchPlan {
            vm_name: "vm".into(),
            disks: vec!["out/vm".into()],
            disk_format: "qcow2".into(),
            from_layer: false,
            iso: Some("a.iso".into()),
            accel: "tcg".into(),
            ssh_host_port: Some(2222),
            ssh_guest_port: 22,
            vnc_port: Some(5901),
            qmp_socket: "/t/qmp".into(),
            event_socket: "/t/events".into(),
            serial_socket: "/t/serial.sock".into(),
            serial_log: "/t/serial".into(),
            headless: true,
            ..LaunchPlan::default()
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
        let a = command_line(&cfg, &rt(), &BTreeMap::new()).unwrap();
        assert_eq!(switch(&a, "-machine"), ["type=pc,accel=tcg"]);
        assert_eq!(
            switch(&a, "-netdev"),
            ["user,id=user.0,hostfwd=tcp:127.0.0.1:2222-:22"]
        );
        assert_eq!(switch(&a, "-device"), ["virtio-net,netdev=user.0"]);
        assert_eq!(
            switch(&a, "-drive"),
            [
                "file=out/vm.partial,cache=writeback,discard=ignore,format=qcow2,if=virtio",
                "file=a.iso,media=cdrom"
            ]
        );
        assert_eq!(switch(&a, "-boot"), ["once=d"]);
        assert_eq!(switch(&a, "-m"), ["512M"]);
        assert_eq!(switch(&a, "-smp"), ["1"]);
        assert_eq!(switch(&a, "-vnc"), ["127.0.0.1:1"]);
        assert_eq!(switch(&a, "-display"), ["none"]);
        assert!(switch(&a, "-fda").is_empty());
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
        let a = command_line(&cfg, &rt(), &values).unwrap();
        assert_eq!(switch(&a, "-m"), ["1024M"]);
        // The user's -device drops the default net card, which Packer adds back (#6804).
        assert_eq!(
            switch(&a, "-device"),
            ["e1000,netdev=user.0", "virtio-net,netdev=user.0"]
        );
        assert_eq!(switch(&a, "-smbios"), ["type=1,serial=vm"]);
    }

    #[test]
    fn a_templates_own_drive_opens_the_disk_under_its_name_while_building() {
        let cfg = QemuConfig {
            qemuargs: vec![
                vec!["-drive".into(), "file=out/vm,if=virtio,format=qcow2".into()],
                vec!["-drive".into(), "file=other.img,if=virtio".into()],
            ],
            ..QemuConfig::default()
        };
        let a = command_line(&cfg, &rt(), &BTreeMap::new()).unwrap();
        assert_eq!(
            switch(&a, "-drive"),
            [
                "file=out/vm.partial,if=virtio,format=qcow2",
                "file=other.img,if=virtio"
            ]
        );
    }

    #[test]
    fn qemuargs_values_are_joined_and_bare_switches_stay_bare() {
        // As Packer does, and as public templates rely on (a -netdev split over strings).
        let cfg = QemuConfig {
            qemuargs: vec![
                vec![
                    "-netdev".into(),
                    "user,id=user.0,".into(),
                    "hostfwd=tcp::{{ .SSHHostPort }}-:22".into(),
                ],
                vec!["-device".into(), "virtio-net,netdev=user.0".into()],
                vec!["-no-reboot".into()],
            ],
            ..QemuConfig::default()
        };
        let values = BTreeMap::from([("SSHHostPort".to_owned(), "2345".to_owned())]);
        let a = command_line(&cfg, &rt(), &values).unwrap();
        assert_eq!(
            switch(&a, "-netdev"),
            ["user,id=user.0,hostfwd=tcp::2345-:22"]
        );
        assert_eq!(switch(&a, "-device"), ["virtio-net,netdev=user.0"]);
        assert_eq!(a.last().map(String::as_str), Some("-no-reboot"));
    }

    #[test]
    fn controller_interfaces_become_drive_and_device_pairs() {
        let mut r = rt();
        r.disks = vec!["out/vm".into(), "out/vm-1".into()];
        let drives = |iface: &str| {
            let cfg = QemuConfig {
                disk_interface: iface.into(),
                ..QemuConfig::default()
            };
            let a = command_line(&cfg, &r, &BTreeMap::new()).unwrap();
            let d: Vec<String> = switch(&a, "-drive")
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let v: Vec<String> = switch(&a, "-device")
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            (d, v)
        };
        let (d, v) = drives("virtio-scsi");
        assert_eq!(
            v,
            [
                "virtio-net,netdev=user.0",
                "virtio-scsi-pci,id=scsi0",
                "scsi-hd,bus=scsi0.0,drive=drive0,bootindex=0",
                "scsi-hd,bus=scsi0.0,drive=drive1"
            ]
        );
        assert!(
            d[0].starts_with("if=none,id=drive0,file=out/vm.partial,"),
            "{d:?}"
        );
        assert!(
            d[1].starts_with("if=none,id=drive1,file=out/vm-1.partial,"),
            "{d:?}"
        );
        let (_, v) = drives("sata");
        assert_eq!(
            v[1..],
            [
                "ahci,id=ahci0",
                "ide-hd,bus=ahci0.0,drive=drive0,bootindex=0",
                "ide-hd,bus=ahci0.1,drive=drive1"
            ]
        );
        let (_, v) = drives("nvme");
        assert_eq!(
            v[1..],
            [
                "nvme,serial=kiln0,drive=drive0,bootindex=0",
                "nvme,serial=kiln1,drive=drive1"
            ]
        );
        let (d, v) = drives("ide");
        assert_eq!(v, ["virtio-net,netdev=user.0"]);
        assert!(d[0].ends_with(",if=ide"), "{d:?}");
    }

    #[test]
    fn cdrom_interface_virtio_scsi_shares_the_controller() {
        let mut r = rt();
        r.cd = Some("cd.iso".into());
        let cfg = QemuConfig {
            disk_interface: "virtio-scsi".into(),
            cdrom_interface: Some("virtio-scsi".into()),
            ..QemuConfig::default()
        };
        let a = command_line(&cfg, &r, &BTreeMap::new()).unwrap();
        let devices = switch(&a, "-device");
        assert_eq!(
            devices
                .iter()
                .filter(|d| d.starts_with("virtio-scsi-pci"))
                .count(),
            1
        );
        assert!(devices.contains(&"scsi-cd,drive=cdrom0"));
        assert!(devices.contains(&"scsi-cd,drive=cdrom1"));
        assert!(switch(&a, "-drive").contains(&"file=cd.iso,if=none,id=cdrom1,media=cdrom"));
    }

    #[test]
    fn smp_follows_packers_topology_rules() {
        let smp_of = |cpus, sockets, cores, threads| {
            smp(&QemuConfig {
                cpus,
                sockets,
                cores,
                threads,
                ..QemuConfig::default()
            })
        };
        assert_eq!(smp_of(None, None, None, None), "1");
        assert_eq!(smp_of(Some(4), None, None, None), "4");
        assert_eq!(smp_of(None, Some(2), Some(2), None), "4,sockets=2,cores=2");
        // More cpus than the topology holds: capped to the topology, as Packer does.
        assert_eq!(
            smp_of(Some(8), Some(1), Some(2), None),
            "2,sockets=1,cores=2"
        );
        assert_eq!(smp_of(Some(2), None, None, Some(2)), "2,threads=2");
    }

    #[test]
    fn firmware_efi_floppy_and_tpm() {
        let mut r = rt();
        r.efivars = Some("out/efivars.fd".into());
        r.floppy = Some("/t/floppy.img".into());
        r.tpm_socket = Some("/t/swtpm.sock".into());
        let cfg = QemuConfig {
            efi_firmware_code: Some("/fw/CODE.fd".into()),
            firmware: Some("/fw/bios.bin".into()),
            ..QemuConfig::default()
        };
        let a = command_line(&cfg, &r, &BTreeMap::new()).unwrap();
        let drives = switch(&a, "-drive");
        assert!(drives.contains(&"file=/fw/CODE.fd,if=pflash,unit=0,format=raw,readonly=on"));
        assert!(drives.contains(&"file=out/efivars.fd,if=pflash,unit=1,format=raw"));
        assert_eq!(switch(&a, "-bios"), ["/fw/bios.bin"]);
        assert_eq!(switch(&a, "-fda"), ["/t/floppy.img"]);
        assert_eq!(
            switch(&a, "-chardev"),
            [
                "socket,id=vtpm,path=/t/swtpm.sock",
                "socket,id=kiln-serial,path=/t/serial.sock,server=on,wait=off"
            ]
        );
        // The console goes through kiln, which writes the log redacted.
        assert_eq!(switch(&a, "-serial"), ["chardev:kiln-serial"]);
        assert!(switch(&a, "-device").contains(&"tpm-tis,tpmdev=tpm0"));
        let pflash = QemuConfig {
            firmware: Some("/fw/bios.bin".into()),
            use_pflash: Some(true),
            ..QemuConfig::default()
        };
        let a = command_line(&pflash, &rt(), &BTreeMap::new()).unwrap();
        assert!(switch(&a, "-bios").is_empty());
        assert!(
            switch(&a, "-drive").contains(&"file=/fw/bios.bin,if=pflash,format=raw,readonly=on")
        );
    }

    #[test]
    fn accelerator_none_and_displays() {
        let mut r = rt();
        r.accel = "none".into();
        r.headless = false;
        let cfg = QemuConfig::default();
        let a = command_line(&cfg, &r, &BTreeMap::new()).unwrap();
        assert_eq!(switch(&a, "-machine"), ["type=pc"]);
        assert_eq!(switch(&a, "-display"), ["gtk"]);
        let sdl = QemuConfig {
            display: Some("sdl".into()),
            ..QemuConfig::default()
        };
        assert_eq!(
            switch(
                &command_line(&sdl, &r, &BTreeMap::new()).unwrap(),
                "-display"
            ),
            ["sdl"]
        );
        let qemu_default = QemuConfig {
            use_default_display: true,
            ..QemuConfig::default()
        };
        assert!(switch(
            &command_line(&qemu_default, &r, &BTreeMap::new()).unwrap(),
            "-display"
        )
        .is_empty());
    }
}
