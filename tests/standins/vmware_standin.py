"""Stand-ins for VMware's vmrun, vmware-vdiskmanager and ovftool (tests/standins/vmrun,
tests/standins/vmware-vdiskmanager, tests/standins/ovftool), for tests on machines without
VMware. Not VMware.

Every call is recorded as one JSON array [tool, args...] per line in
$KILN_VMWARE_STANDIN_DIR/calls.log, and checked against the tool's documented grammar for the
subcommands kiln uses; anything else fails as the real tool fails ("Error: ..." and exit 255
for vmrun, a usage message and exit 1 for the others).

- vmware-vdiskmanager: `-c -s <n>KB|MB|GB -a ide|buslogic|lsilogic -t 0..5 <file>` makes a
  VMDK with qemu-img (`-o adapter_type=`, the subformat of the type id); `-d`/`-k` <file>
  (defragment, shrink) only check the file and record.
- ovftool: `[--options...] <source.vmx> <target.ovf|.ova>` writes an OVF with each disk of the
  .vmx as a streamOptimized VMDK (an OVA: the same in a tar, OVF first).
  `[--options...] <source.ovf|.ova> <directory>` imports: <directory>/<--name>/<--name>.vmx
  with the OVF's disks (qemu-img convert to VMDK) on SCSI, its CPUs and memory
  (--maxVirtualHardwareVersion= is its virtualHW.version), a NAT NIC and guestOS other-64.
- vmrun: `[-T ws|player|fusion] start <vmx> [gui|nogui] | stop <vmx> [hard|soft] | list |
  getGuestIPAddress <vmx> [-wait] | snapshot <vmx> <name> | revertToSnapshot <vmx> <name> |
  listSnapshots <vmx> [showTree] | clone <vmx> <target vmx> full|linked [-snapshot=<name>]
  [-cloneName=<name>]`. State in $KILN_VMWARE_STANDIN_DIR/vms.json. A full clone copies the
  .vmx and its disks (qemu-img convert) beside the target, naming the disks after the
  target's stem as VMware does and rewriting their fileName; a linked clone makes each disk a
  VMDK delta whose backing file is the source's (qemu-img create -b), so QEMU boots either.
  Clones, like VMware's, need the source powered off; a named -snapshot must exist (a linked
  clone of a running VM is refused too). The Player (-T player) has no clone or snapshots.
  Without QEMU, a started VM is a null guest: `list` shows it running
  $KILN_VMWARE_STANDIN_RUNS_FOR times (default 1), then it has powered itself off.
  With KILN_VMWARE_STANDIN_QEMU=1 the .vmx runs on QEMU (TCG): memsize, numvcpus, the
  present disks and CD-ROM images on their buses (ide, sata as AHCI, scsi as LSI, nvme),
  bios.bootOrder, QEMU's VNC server on RemoteDisplay.vnc.port/ip with the .vmx's password (set
  over QMP), the NIC with ethernet0.address (or a generatedAddress written to the .vmx, as
  VMware does at power-on) as user-mode networking. vmxnet3 (paravirtual) becomes
  virtio-net, since test guests drive virtio; e1000 stays e1000. The guest's SSH port is
  forwarded from 127.0.0.1:$KILN_VMWARE_STANDIN_SSH_PORT, so getGuestIPAddress answers
  127.0.0.1 (the template sets ssh_port to that port). The serial console goes to
  $KILN_VMWARE_STANDIN_DIR/<vmx name>.serial.log; with $KILN_VMWARE_STANDIN_READY, `start`
  returns once that text is on it.
  With KILN_VMWARE_STANDIN_BRIDGE=<bridge>, the NIC is on that Linux bridge instead
  (qemu-bridge-helper; its ACL must allow the bridge) and, as with a guest without VMware
  Tools, getGuestIPAddress fails: the guest's address is in the DHCP server's leases only.
  Without QEMU, a started VM whose .vmx turns on RemoteDisplay.vnc gets a small RFB 3.8 server
  on that address that takes one client (VNC-password security when the .vmx sets a password:
  the challenge's answer is accepted, not checked) and writes each KeyEvent it receives to
  $KILN_VMWARE_STANDIN_DIR/<vmx name>.keys.log as "down|up <keysym hex>", so tests see what
  was typed.

Faults: $KILN_VMWARE_STANDIN_FAULTS names a JSON file of
[{"match": "substring of the joined call", "exit": 255, "output": "Error: ...", "times": 1}].
"""

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time

DIR = os.environ.get("KILN_VMWARE_STANDIN_DIR", ".")
QEMU = os.environ.get("KILN_VMWARE_STANDIN_QEMU") == "1"
BRIDGE = os.environ.get("KILN_VMWARE_STANDIN_BRIDGE")
GENERATED_MAC = "00:0c:29:c0:ff:ee"


def record(argv):
    with open(os.path.join(DIR, "calls.log"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(argv) + "\n")


def fault(argv):
    path = os.environ.get("KILN_VMWARE_STANDIN_FAULTS")
    if not path:
        return None
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        faults = json.load(f)
        joined = " ".join(argv)
        for rule in faults:
            if rule["match"] in joined and rule.get("times", 1) > 0:
                rule["times"] = rule.get("times", 1) - 1
                f.seek(0)
                f.truncate()
                json.dump(faults, f)
                return rule
    return None


def fail(code, text):
    print(text)
    sys.exit(code)


# --- .vmx -------------------------------------------------------------------------------

def read_vmx(path):
    data = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("//") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip().strip('"')
            value = re.sub(r"\|([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)
            data[key.strip().lower()] = value
    return data


def append_vmx(path, key, value):
    with open(path, "a") as f:
        f.write('%s = "%s"\n' % (key, value))


# --- state --------------------------------------------------------------------------------

class State:
    def __init__(self):
        self.path = os.path.join(DIR, "vms.json")
        self.lock = open(self.path + ".lock", "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        try:
            with open(self.path) as f:
                self.vms = json.load(f)
        except FileNotFoundError:
            self.vms = {}

    def save(self):
        with open(self.path, "w") as f:
            json.dump(self.vms, f)


def alive(vm):
    pid = vm.get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (ProcessLookupError, OSError):
        return False


def running(vm):
    if QEMU:
        return alive(vm)
    if vm.get("runs_for", 0) > 0:
        vm["runs_for"] -= 1
        return True
    # Powered off by itself: its VNC server goes with it.
    kill(vm)
    return False


# --- vmrun --------------------------------------------------------------------------------

def vmrun(args):
    argv = list(args)
    if argv[:1] == ["-T"]:
        if len(argv) < 2 or argv[1] not in ("ws", "player", "fusion"):
            fail(255, "Error: Unrecognized host type: %s" % (argv[1] if len(argv) > 1 else ""))
        argv = argv[2:]
    if not argv:
        fail(255, "Error: No command given")
    cmd, rest = argv[0], argv[1:]
    grammar = {
        "start": (1, [("gui", "nogui")]),
        "stop": (1, [("hard", "soft")]),
        "list": (0, []),
        "getGuestIPAddress": (1, [("-wait",)]),
        "snapshot": (2, []),
        "revertToSnapshot": (2, []),
        "listSnapshots": (1, [("showTree",)]),
    }
    if cmd == "clone":
        return clone(rest, args[:2] == ["-T", "player"])
    if cmd not in grammar:
        fail(255, "Error: Unrecognized command: %s" % cmd)
    if args[:2] == ["-T", "player"] and cmd in ("snapshot", "revertToSnapshot", "listSnapshots"):
        fail(255, "Error: The operation is not supported for the specified parameters")
    needed, optional = grammar[cmd]
    if len(rest) < needed or len(rest) > needed + len(optional):
        fail(255, "Error: Invalid number of arguments for %s" % cmd)
    for value, allowed in zip(rest[needed:], optional):
        if value not in allowed:
            fail(255, "Error: Invalid argument: %s" % value)
    state = State()
    if cmd == "list":
        up = [p for p, vm in state.vms.items() if running(vm)]
        state.save()
        print("Total running VMs: %d" % len(up))
        for p in up:
            print(p)
        return
    vmx = rest[0]
    if not os.path.isfile(vmx):
        fail(255, "Error: Cannot open VM: %s, The virtual machine cannot be found" % vmx)
    vm = state.vms.setdefault(vmx, {})
    if cmd == "start":
        if running(vm):
            fail(255, "Error: The virtual machine is already running")
        # What the VM was started with, for the tests to read.
        with open(vmx) as src, open(base(vmx) + ".started.vmx", "w") as dst:
            dst.write(src.read())
        if QEMU:
            start(vmx, vm)
        else:
            vm["runs_for"] = int(os.environ.get("KILN_VMWARE_STANDIN_RUNS_FOR", "1"))
            vm["pid"] = key_recorder(vmx)
        state.save()
    elif cmd == "stop":
        if not running(vm):
            state.save()
            fail(255, "Error: The virtual machine is not powered on: %s" % vmx)
        mode = rest[1] if len(rest) > 1 else "soft"
        if QEMU and mode == "soft":
            Qmp(vm["qmp"]).call("system_powerdown")
        elif QEMU or vm.get("pid"):
            kill(vm)
        vm["runs_for"] = 0
        state.save()
    elif cmd == "snapshot":
        vm.setdefault("snapshots", []).append(rest[1])
        state.save()
    elif cmd == "revertToSnapshot":
        if rest[1] not in vm.get("snapshots", []):
            state.save()
            fail(255, "Error: A snapshot with the name does not exist")
        state.save()
    elif cmd == "listSnapshots":
        state.save()
        snaps = vm.get("snapshots", [])
        print("Total snapshots: %d" % len(snaps))
        for name in snaps:
            print(name)
    elif cmd == "getGuestIPAddress":
        if not running(vm):
            state.save()
            fail(255, "Error: The virtual machine is not powered on: %s" % vmx)
        state.save()
        if BRIDGE:
            fail(255, "Error: The VMware Tools are not running in the virtual machine: %s" % vmx)
        print("127.0.0.1" if QEMU else "192.168.56.129")


def key_recorder(vmx):
    """Starts the null guest's VNC server when the .vmx turns one on; returns its pid."""
    data = read_vmx(vmx)
    if data.get("remotedisplay.vnc.enabled", "").upper() != "TRUE":
        return None
    # Bound here, before `start` returns, so that kiln can connect as soon as it does.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((data.get("remotedisplay.vnc.ip", "127.0.0.1"),
               int(data.get("remotedisplay.vnc.port", "5900"))))
    sock.listen(1)
    password = "1" if data.get("remotedisplay.vnc.password") else "0"
    child = subprocess.Popen(
        [sys.executable, os.path.realpath(__file__), "vnc-recorder", str(sock.fileno()),
         password, base(vmx) + ".keys.log"],
        pass_fds=[sock.fileno()], start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return child.pid


def serve_keys(fd, password, log):
    """The RFB server side, up to KeyEvents: one client, then exit (or after 10 idle minutes)."""
    listener = socket.socket(fileno=fd)
    listener.settimeout(600)
    conn, _ = listener.accept()
    conn.settimeout(600)
    f = conn.makefile("rwb")

    def read(n):
        data = f.read(n)
        if len(data) != n:
            sys.exit(0)
        return data

    f.write(b"RFB 003.008\n")
    f.flush()
    read(12)
    f.write(bytes([1, 2 if password else 1]))
    f.flush()
    read(1)
    if password:
        f.write(os.urandom(16))
        f.flush()
        read(16)
    f.write((0).to_bytes(4, "big"))
    f.flush()
    read(1)  # ClientInit
    name = b"kiln stand-in"
    pixel = bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
    f.write((640).to_bytes(2, "big") + (480).to_bytes(2, "big") + pixel
            + len(name).to_bytes(4, "big") + name)
    f.flush()
    with open(log, "a") as out:
        while True:
            kind = read(1)[0]
            if kind == 0:  # SetPixelFormat
                read(19)
            elif kind == 2:  # SetEncodings
                read(1)
                read(4 * int.from_bytes(read(2), "big"))
            elif kind == 3:  # FramebufferUpdateRequest
                read(9)
            elif kind == 4:  # KeyEvent
                event = read(7)
                out.write("%s %04x\n" % ("down" if event[0] else "up",
                                         int.from_bytes(event[3:], "big")))
                out.flush()
            elif kind == 5:  # PointerEvent
                read(5)
            elif kind == 6:  # ClientCutText
                read(3)
                read(int.from_bytes(read(4), "big"))
            else:
                sys.exit(1)


def clone(rest, player):
    if player:
        fail(255, "Error: The operation is not supported for the specified parameters")
    if len(rest) < 3 or len(rest) > 5 or rest[2] not in ("full", "linked"):
        fail(255, "Error: Invalid arguments for clone")
    source, target, kind = rest[:3]
    snapshot = None
    for opt in rest[3:]:
        if opt.startswith("-snapshot="):
            snapshot = opt[len("-snapshot="):]
        elif not opt.startswith("-cloneName="):
            fail(255, "Error: Invalid argument: %s" % opt)
    if not os.path.isfile(source):
        fail(255, "Error: Cannot open VM: %s, The virtual machine cannot be found" % source)
    if not os.path.isabs(target):
        fail(255, "Error: The destination path must be absolute: %s" % target)
    if os.path.exists(target):
        fail(255, "Error: The destination file already exists: %s" % target)
    state = State()
    vm = state.vms.get(source, {})
    if running(vm):
        state.save()
        fail(255, "Error: The virtual machine should not be powered on. It is already running.")
    if snapshot is not None and snapshot not in vm.get("snapshots", []):
        state.save()
        fail(255, "Error: Invalid snapshot name '%s'" % snapshot)
    state.save()
    src_dir = os.path.dirname(os.path.abspath(source))
    dst_dir = os.path.dirname(target)
    stem = os.path.splitext(os.path.basename(target))[0]
    os.makedirs(dst_dir, exist_ok=True)
    lines, n = [], 0
    with open(source) as f:
        for line in f:
            m = re.match(r'^\s*((?:ide|sata|scsi|nvme)\d+:\d+)\.fileName\s*=\s*"(.*\.vmdk)"\s*$', line,
                         re.IGNORECASE)
            if m:
                n += 1
                disk = m.group(2) if os.path.isabs(m.group(2)) else os.path.join(src_dir, m.group(2))
                name = "%s-cl%d.vmdk" % (stem, n)
                dst = os.path.join(dst_dir, name)
                if kind == "full":
                    subprocess.run(["qemu-img", "convert", "-q", "-O", "vmdk", disk, dst], check=True)
                else:
                    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-b",
                                    os.path.abspath(disk), "-F", "vmdk", dst], check=True)
                line = '%s.fileName = "%s"\n' % (m.group(1), name)
            elif re.match(r'^\s*(displayName|nvram|extendedConfigFile)\s*=', line, re.IGNORECASE):
                key = line.split("=", 1)[0].strip()
                value = {"displayname": "Clone of " + stem, "nvram": stem + ".nvram",
                         "extendedconfigfile": stem + ".vmxf"}[key.lower()]
                line = '%s = "%s"\n' % (key, value)
            lines.append(line)
    with open(target, "w") as f:
        f.writelines(lines)


def base(vmx):
    return os.path.join(DIR, os.path.splitext(os.path.basename(vmx))[0])


def drives(vmx, data):
    """QEMU arguments for the present disks and CD-ROM images."""
    folder = os.path.dirname(os.path.abspath(vmx))
    order = [o.strip() for o in data.get("bios.bootorder", "hdd,cdrom").split(",")]
    index = {k: order.index(k) + 1 for k in ("hdd", "cdrom") if k in order}
    args, controllers, n = [], set(), 0
    for key in sorted(data):
        m = re.match(r"^(ide|sata|scsi|nvme)(\d+):(\d+)\.present$", key)
        if not m or data[key].upper() != "TRUE":
            continue
        bus, busno, unit = m.group(1), int(m.group(2)), int(m.group(3))
        dev = "%s%d:%d" % (bus, busno, unit)
        name = data.get(dev + ".filename", "")
        kind = "cdrom" if data.get(dev + ".devicetype", "").startswith("cdrom") else "hdd"
        if kind == "cdrom" and data.get(dev + ".devicetype") != "cdrom-image":
            continue
        if not name:
            continue
        path = name if os.path.isabs(name) else os.path.join(folder, name)
        fmt = "raw" if kind == "cdrom" else "vmdk"
        ro = ",readonly=on" if kind == "cdrom" else ""
        drive = "d%d" % n
        n += 1
        args += ["-drive", "file=%s,if=none,id=%s,format=%s%s" % (path, drive, fmt, ro)]
        boot = ",bootindex=%d" % index[kind] if kind in index else ""
        if bus == "ide":
            qdev = "ide-cd" if kind == "cdrom" else "ide-hd"
            args += ["-device", "%s,drive=%s,bus=ide.%d,unit=%d%s" % (qdev, drive, busno, unit, boot)]
        elif bus == "sata":
            if "sata" not in controllers:
                controllers.add("sata")
                args += ["-device", "ahci,id=sata"]
            qdev = "ide-cd" if kind == "cdrom" else "ide-hd"
            args += ["-device", "%s,drive=%s,bus=sata.%d%s" % (qdev, drive, unit, boot)]
        elif bus == "scsi":
            if "scsi" not in controllers:
                controllers.add("scsi")
                args += ["-device", "lsi53c895a,id=scsi"]
            qdev = "scsi-cd" if kind == "cdrom" else "scsi-hd"
            args += ["-device", "%s,drive=%s,bus=scsi.0,scsi-id=%d%s" % (qdev, drive, unit, boot)]
        else:
            args += ["-device", "nvme,drive=%s,serial=vmw%d%s" % (drive, unit, boot)]
    return args


def start(vmx, vm):
    data = read_vmx(vmx)
    b = base(vmx)
    for stale in (".qmp", ".serial.log", ".pid"):
        if os.path.exists(b + stale):
            os.remove(b + stale)
    mac = data.get("ethernet0.address") or data.get("ethernet0.generatedaddress")
    if not mac:
        # VMware generates the MAC at the first power-on and writes it to the .vmx.
        mac = GENERATED_MAC
        append_vmx(vmx, "ethernet0.generatedAddress", mac)
    model = "e1000" if data.get("ethernet0.virtualdev", "e1000").startswith("e1000") else "virtio-net-pci"
    fwd = os.environ.get("KILN_VMWARE_STANDIN_SSH_PORT")
    hostfwd = ",hostfwd=tcp:127.0.0.1:%s-:22" % fwd if fwd else ""
    netdev = "bridge,id=n0,br=" + BRIDGE if BRIDGE else "user,id=n0" + hostfwd
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "pc",
            "-m", data.get("memsize", "512"), "-smp", data.get("numvcpus", "1"),
            "-display", "none", "-vga", "std", "-no-user-config", "-nodefaults",
            "-serial", "file:%s.serial.log" % b,
            "-qmp", "unix:%s.qmp,server=on,wait=off" % b,
            "-pidfile", b + ".pid", "-daemonize",
            "-netdev", netdev, "-device", "%s,netdev=n0,mac=%s" % (model, mac)]
    password = None
    if data.get("remotedisplay.vnc.enabled", "").upper() == "TRUE":
        port = int(data.get("remotedisplay.vnc.port", "5900"))
        password = data.get("remotedisplay.vnc.password")
        argv += ["-vnc", "%s:%d%s" % (data.get("remotedisplay.vnc.ip", "127.0.0.1"), port - 5900,
                                      ",password=on" if password else "")]
    argv += drives(vmx, data)
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    with open(b + ".pid") as f:
        vm["pid"] = int(f.read().strip())
    vm["qmp"] = b + ".qmp"
    if password:
        Qmp(vm["qmp"]).call("change-vnc-password", password=password)
    ready = os.environ.get("KILN_VMWARE_STANDIN_READY")
    if ready:
        deadline = time.time() + 300
        while ready not in read(b + ".serial.log"):
            if time.time() > deadline or not alive(vm):
                fail(255, "Error: the guest never showed %r on its serial console" % ready)
            time.sleep(0.2)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.file = self.sock.makefile("rw")
        self.file.readline()
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


def kill(vm):
    if alive(vm):
        os.kill(vm["pid"], signal.SIGKILL)
        for _ in range(100):
            if not alive(vm):
                break
            time.sleep(0.05)
    vm.pop("pid", None)


# --- vmware-vdiskmanager ------------------------------------------------------------------

SUBFORMATS = {"0": "monolithicSparse", "1": "twoGbMaxExtentSparse", "2": "monolithicFlat",
              "3": "twoGbMaxExtentFlat", "4": "monolithicFlat", "5": "streamOptimized"}


def usage(tool):
    fail(1, "%s: invalid arguments (the stand-in knows -c, -d and -k)" % tool)


def vdiskmanager(args):
    if len(args) == 2 and args[0] in ("-d", "-k"):
        if not os.path.isfile(args[1]):
            fail(1, "Failed to open the disk '%s' : The file specified is not a virtual disk" % args[1])
        print("%s completed successfully." % ("Defragmentation" if args[0] == "-d" else "Shrink"))
        return
    if len(args) != 8 or args[0] != "-c" or args[1] != "-s" or args[3] != "-a" or args[5] != "-t":
        usage("vmware-vdiskmanager")
    m = re.match(r"^(\d+)(KB|MB|GB)$", args[2])
    if not m or args[4] not in ("ide", "buslogic", "lsilogic") or args[6] not in SUBFORMATS:
        usage("vmware-vdiskmanager")
    size = "%s%s" % (m.group(1), m.group(2)[0])
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", "-o",
                    "adapter_type=%s,subformat=%s" % (args[4], SUBFORMATS[args[6]]), args[7], size],
                   check=True)
    print("Virtual disk creation successful.")


# --- ovftool ------------------------------------------------------------------------------

OVF_NS = "{http://schemas.dmtf.org/ovf/envelope/1}"
RASD_NS = "{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}"


def ovf_import(args, source, target):
    """An OVF/OVA imported as VMware does it: <target>/<name>/<name>.vmx with the OVF's disks
    (converted to VMDK with qemu-img) on SCSI, its CPUs and memory, one NAT NIC."""
    import tempfile
    import xml.etree.ElementTree as ET
    name = next((a.split("=", 1)[1] for a in args if a.startswith("--name=")),
                os.path.splitext(os.path.basename(source))[0])
    version = next((a.split("=", 1)[1] for a in args
                    if a.startswith("--maxVirtualHardwareVersion=")), "21")
    with tempfile.TemporaryDirectory() as unpacked:
        if source.lower().endswith(".ova"):
            with tarfile.open(source) as tar:
                tar.extractall(unpacked, filter="data")
            ovfs = [f for f in sorted(os.listdir(unpacked)) if f.lower().endswith(".ovf")]
            if not ovfs:
                fail(1, "Error: no .ovf in %s" % source)
            ovf = os.path.join(unpacked, ovfs[0])
        else:
            ovf = source
        root = ET.parse(ovf).getroot()
        hrefs = {f.get(OVF_NS + "id"): f.get(OVF_NS + "href") for f in root.iter(OVF_NS + "File")}
        disks = [hrefs[d.get(OVF_NS + "fileRef")] for d in root.iter(OVF_NS + "Disk")
                 if d.get(OVF_NS + "fileRef") in hrefs]
        # An OVF without a DiskSection (the export above writes none): its VMDK files.
        disks = disks or [h for h in hrefs.values() if h.lower().endswith(".vmdk")]
        quantity = {}
        for item in root.iter(OVF_NS + "Item"):
            kind = item.findtext(RASD_NS + "ResourceType")
            if kind in ("3", "4"):
                quantity[kind] = item.findtext(RASD_NS + "VirtualQuantity")
        out = os.path.join(target, name)
        os.makedirs(out)
        lines = ['.encoding = "UTF-8"', 'config.version = "8"',
                 'virtualHW.version = "%s"' % version, 'displayName = "%s"' % name,
                 'guestOS = "other-64"', 'numvcpus = "%s"' % quantity.get("3", "1"),
                 'memsize = "%s"' % quantity.get("4", "512"), 'scsi0.present = "TRUE"',
                 'scsi0.virtualDev = "lsilogic"', 'ethernet0.present = "TRUE"',
                 'ethernet0.connectionType = "nat"', 'ethernet0.addressType = "generated"',
                 'ethernet0.virtualDev = "e1000"']
        for n, href in enumerate(disks):
            vmdk = "%s-disk%d.vmdk" % (name, n + 1)
            subprocess.run(["qemu-img", "convert", "-q", "-O", "vmdk",
                            os.path.join(os.path.dirname(ovf), href), os.path.join(out, vmdk)],
                           check=True)
            lines += ['scsi0:%d.present = "TRUE"' % n, 'scsi0:%d.fileName = "%s"' % (n, vmdk)]
        with open(os.path.join(out, name + ".vmx"), "w") as f:
            f.write("\n".join(lines) + "\n")
    print("Completed successfully")


def ovftool(args):
    # Options (--compress=9, --noSSLVerify, ...) are recorded with the call, not checked.
    paths = [a for a in args if not a.startswith("-")]
    if len(paths) == 2 and re.search(r"\.(ovf|ova)$", paths[0], re.I) and os.path.isdir(paths[1]):
        ovf_import(args, *paths)
        return
    if len(paths) != 2 or not paths[0].endswith(".vmx") or not re.search(r"\.(ovf|ova)$", paths[1]):
        fail(1, "Error: the stand-in takes [options] <source.vmx> <target.ovf|.ova> (got %s)" % args)
    source, target = paths
    data = read_vmx(source)
    folder = os.path.dirname(os.path.abspath(source))
    out = os.path.dirname(os.path.abspath(target))
    stem = os.path.splitext(os.path.basename(target))[0]
    disks = []
    for key in sorted(data):
        m = re.match(r"^((?:ide|sata|scsi|nvme)\d+:\d+)\.filename$", key)
        if m and data[key].endswith(".vmdk") and data.get(m.group(1) + ".present", "").upper() == "TRUE":
            disks.append(os.path.join(folder, data[key]))
    files = []
    for n, disk in enumerate(disks, 1):
        vmdk = os.path.join(out, "%s-disk%d.vmdk" % (stem, n))
        subprocess.run(["qemu-img", "convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized",
                        disk, vmdk], check=True)
        files.append(vmdk)
    ovf = os.path.join(out, stem + ".ovf")
    refs = "".join('    <File ovf:id="file%d" ovf:href="%s"/>\n' % (n, os.path.basename(v))
                   for n, v in enumerate(files, 1))
    with open(ovf, "w") as f:
        f.write('<?xml version="1.0"?>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
                'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">\n  <References>\n%s  </References>\n'
                '  <VirtualSystem ovf:id="%s"><Name>%s</Name></VirtualSystem>\n</Envelope>\n'
                % (refs, stem, data.get("displayname", stem)))
    if target.endswith(".ova"):
        with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as tar:
            for p in [ovf] + files:
                tar.add(p, arcname=os.path.basename(p))
        for p in [ovf] + files:
            os.remove(p)
    print("Completed successfully")


def main(tool):
    args = sys.argv[1:]
    if args[:1] == ["vnc-recorder"]:
        serve_keys(int(args[1]), args[2] == "1", args[3])
        return
    record([tool] + args)
    rule = fault([tool] + args)
    if rule:
        print(rule.get("output", "Error: injected fault"))
        sys.exit(rule.get("exit", 255))
    {"vmrun": vmrun, "vmware-vdiskmanager": vdiskmanager, "ovftool": ovftool}[tool](args)


if __name__ == "__main__":
    main("vmware_standin.py")
