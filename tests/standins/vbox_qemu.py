"""The QEMU-backed half of the VBoxManage stand-in (tests/standins/VBoxManage).

Not VirtualBox. With KILN_VBOX_STANDIN_QEMU=1 the stand-in runs the VM it was told to make on
QEMU (TCG), so that a guest really receives what kiln sends through VBoxManage:

- `createhd`/`createmedium` make the image with `qemu-img` (VDI, VMDK and VHD are formats
  both tools know);
- `startvm` starts QEMU with the VM's memory, CPUs, chipset (piix3 -> pc, ich9 -> q35), the
  attached media on the controller types VirtualBox's buses stand for (IDE, AHCI for SATA,
  virtio-scsi for VirtIO, LSI for SCSI, NVMe for PCIe), the boot order, a virtio or e1000 NIC
  by `--nictype1`, and NAT rules (`--natpf1`) as user-mode `hostfwd`s; the serial port goes
  to <dir>/<vm>.serial.log for the tests to read;
- `keyboardputscancode` sends each PC-XT set-1 byte to QEMU's PS/2 keyboard as a QMP
  `input-send-event` of a `number` key (a break code is a key-up; an `e0` prefix selects
  QEMU's extended numbers, code | 0x80), one event at a time, as a keyboard controller
  takes them;
- `showvminfo` reports `running` while QEMU lives, `poweroff` once it has exited (a guest
  powering itself off ends QEMU);
- `controlvm acpipowerbutton` is QMP `system_powerdown`, `poweroff` kills QEMU;
- `export` converts each attached disk to a streamOptimized VMDK beside an OVF that carries
  VirtualBox's `<vbox:Machine>` section with the NIC's MAC, as VirtualBox's export does
  (`.ova`: the same, packed into a tar, OVF first).

KILN_VBOX_STANDIN_READY: `startvm` returns only once this text is on the serial console (a
test aid, so that boot_wait does not have to guess how long TCG takes to reach the boot
loader's prompt).
"""

import json
import os
import signal
import socket
import subprocess
import tarfile
import time

MAC = "080027C0FFEE"
READY_TIMEOUT = 300


def enabled():
    return os.environ.get("KILN_VBOX_STANDIN_QEMU") == "1"


def alive(vm):
    pid = vm.get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A daemonized QEMU is not our child; its /proc entry goes when it exits.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def refresh(state):
    """A VM whose QEMU has exited is powered off."""
    for vm in state["vms"].values():
        if vm.get("pid") and not alive(vm):
            vm["state"] = "poweroff"
            vm.pop("pid", None)


def create_disk(path, mib, fmt):
    fmt = {"vdi": "vdi", "vmdk": "vmdk", "vhd": "vpc"}.get(fmt.lower(), "vdi")
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, path, "%dM" % mib], check=True)


def image_info(path):
    out = subprocess.run(["qemu-img", "info", "--output=json", path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def setting(vm, name, default=None):
    return vm.get("settings", {}).get(name, [default])[0]


def drives(vm):
    """QEMU arguments for the attached media, and the boot order's bootindex per type."""
    order = [setting(vm, "--boot%d" % n, "none") for n in (1, 2, 3, 4)]
    index = {kind: order.index(kind) + 1 for kind in ("disk", "dvd", "floppy") if kind in order}
    args, buses = [], {}
    for key, medium in sorted(vm.get("media", {}).items()):
        ctl, port, device = key.rsplit(":", 2)
        bus = vm["controllers"][ctl]["add"].lower()
        n = len(args)
        kind = "disk" if medium["type"] == "hdd" else "dvd" if medium["type"] == "dvddrive" else "floppy"
        if kind == "floppy":
            args += ["-drive", "file=%s,if=floppy,format=raw" % medium["path"]]
            continue
        fmt = image_info(medium["path"])["format"] if kind == "disk" else "raw"
        ro = ",readonly=on" if kind == "dvd" else ""
        drive = "d%d" % n
        args += ["-drive", "file=%s,if=none,id=%s,format=%s%s" % (medium["path"], drive, fmt, ro)]
        boot = ",bootindex=%d" % index[kind] if kind in index else ""
        if bus == "ide":
            dev = "ide-hd" if kind == "disk" else "ide-cd"
            args += ["-device", "%s,drive=%s,bus=ide.%s,unit=%s%s" % (dev, drive, port, device, boot)]
        elif bus == "sata":
            if "sata" not in buses:
                buses["sata"] = True
                args += ["-device", "ahci,id=sata"]
            dev = "ide-hd" if kind == "disk" else "ide-cd"
            args += ["-device", "%s,drive=%s,bus=sata.%s%s" % (dev, drive, port, boot)]
        elif bus in ("virtio", "scsi", "sas"):
            ctl_id = "scsi_" + bus
            if ctl_id not in buses:
                buses[ctl_id] = True
                model = "virtio-scsi-pci" if bus == "virtio" else "lsi53c895a"
                args += ["-device", "%s,id=%s" % (model, ctl_id)]
            dev = "scsi-hd" if kind == "disk" else "scsi-cd"
            args += ["-device", "%s,drive=%s,bus=%s.0,scsi-id=%s%s" % (dev, drive, ctl_id, port, boot)]
        elif bus == "pcie":
            args += ["-device", "nvme,drive=%s,serial=vbox%s%s" % (drive, port, boot)]
        else:
            raise RuntimeError("the QEMU stand-in cannot attach media on a %s bus" % bus)
    return args


def nic(vm):
    hostfwd = ""
    for rule in vm.get("rules", {}).values():
        # name,proto,host ip,host port,guest ip,guest port
        _, proto, hip, hport, gip, gport = rule.split(",")
        hostfwd += ",hostfwd=%s:%s:%s-%s:%s" % (proto, hip, hport, gip, gport)
    model = "virtio-net-pci" if setting(vm, "--nictype1", "82540EM") == "virtio" else "e1000"
    mac = ":".join(MAC[i:i + 2] for i in range(0, 12, 2))
    return ["-netdev", "user,id=n0" + hostfwd, "-device", "%s,netdev=n0,mac=%s" % (model, mac)]


def start(directory, name, vm):
    base = os.path.join(directory, name)
    for stale in (".qmp", ".serial.log", ".pid"):
        if os.path.exists(base + stale):
            os.remove(base + stale)
    machine = "q35" if setting(vm, "--chipset", "piix3") == "ich9" else "pc"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", machine,
            "-m", setting(vm, "--memory", "128"), "-smp", setting(vm, "--cpus", "1"),
            "-display", "none", "-vga", "std", "-no-user-config", "-nodefaults",
            "-serial", "file:%s.serial.log" % base,
            "-qmp", "unix:%s.qmp,server=on,wait=off" % base,
            "-pidfile", base + ".pid", "-daemonize"]
    argv += drives(vm) + nic(vm)
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    with open(base + ".pid") as f:
        vm["pid"] = int(f.read().strip())
    ready = os.environ.get("KILN_VBOX_STANDIN_READY")
    if ready:
        deadline = time.time() + READY_TIMEOUT
        while ready not in read(base + ".serial.log"):
            if time.time() > deadline or not alive(vm):
                raise RuntimeError("the guest never showed %r on its serial console" % ready)
            time.sleep(0.2)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Qmp:
    def __init__(self, directory, name):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(os.path.join(directory, name + ".qmp"))
        self.file = self.sock.makefile("rw")
        self.file.readline()  # greeting
        self.call("qmp_capabilities")

    def call(self, command, **arguments):
        self.file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError("QMP %s: %s" % (command, reply["error"]["desc"]))


def scancodes(directory, name, codes):
    qmp = Qmp(directory, name)
    extended = False
    for code in (int(c, 16) for c in codes):
        if code == 0xE0:
            extended = True
            continue
        number = (code & 0x7F) | (0x80 if extended else 0)
        extended = False
        event = {"type": "key", "data": {"down": code & 0x80 == 0,
                                         "key": {"type": "number", "data": number}}}
        qmp.call("input-send-event", events=[event])
        time.sleep(0.01)


def powerdown(directory, name):
    Qmp(directory, name).call("system_powerdown")


def kill(vm):
    if alive(vm):
        os.kill(vm["pid"], signal.SIGKILL)
        for _ in range(100):
            if not alive(vm):
                break
            time.sleep(0.05)
    vm["state"] = "poweroff"
    vm.pop("pid", None)


def export(vm, name, output):
    """An OVF (or OVA) of the VM with its disks as streamOptimized VMDKs, named as VirtualBox
    names them (<vm>-disk001.vmdk, …)."""
    ova = output.lower().endswith(".ova")
    folder = os.path.dirname(os.path.abspath(output))
    stem = os.path.splitext(os.path.basename(output))[0]
    disks = [m["path"] for _, m in sorted(vm.get("media", {}).items()) if m["type"] == "hdd"]
    files = []
    for n, disk in enumerate(disks, 1):
        vmdk = os.path.join(folder, "%s-disk%03d.vmdk" % (stem, n))
        subprocess.run(["qemu-img", "convert", "-q", "-O", "vmdk", "-o",
                        "subformat=streamOptimized", disk, vmdk], check=True)
        files.append(vmdk)
    ovf = os.path.join(folder, stem + ".ovf")
    with open(ovf, "w") as f:
        f.write(ovf_text(name, vm, files))
    if ova:
        with tarfile.open(output, "w", format=tarfile.USTAR_FORMAT) as tar:
            for path in [ovf] + files:
                tar.add(path, arcname=os.path.basename(path))
        for path in [ovf] + files:
            os.remove(path)


def ovf_text(name, vm, vmdks):
    refs = "".join('    <File ovf:id="file%d" ovf:href="%s"/>\n' % (n, os.path.basename(v))
                   for n, v in enumerate(vmdks, 1))
    disks = "".join('    <Disk ovf:capacity="%d" ovf:diskId="vmdisk%d" ovf:fileRef="file%d" '
                    'ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>\n'
                    % (capacity(v), n, n) for n, v in enumerate(vmdks, 1))
    return ("<?xml version=\"1.0\"?>\n"
            "<Envelope ovf:version=\"1.0\" xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "
            "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\" "
            "xmlns:vbox=\"http://www.virtualbox.org/ovf/machine\">\n"
            "  <References>\n%s  </References>\n"
            "  <DiskSection>\n%s  </DiskSection>\n"
            "  <VirtualSystem ovf:id=\"%s\">\n"
            "    <vbox:Machine ovf:required=\"false\" name=\"%s\">\n"
            "      <Hardware><CPU count=\"%s\"/><Memory RAMSize=\"%s\"/>\n"
            "        <Network><Adapter slot=\"0\" enabled=\"true\" MACAddress=\"%s\" type=\"%s\"/></Network>\n"
            "      </Hardware>\n"
            "    </vbox:Machine>\n"
            "  </VirtualSystem>\n"
            "</Envelope>\n") % (refs, disks, name, name, setting(vm, "--cpus", "1"),
                                setting(vm, "--memory", "128"), MAC,
                                setting(vm, "--nictype1", "82540EM"))


def capacity(path):
    return image_info(path)["virtual-size"]
