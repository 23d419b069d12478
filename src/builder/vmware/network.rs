//! The guest's address from VMware's DHCP leases, as Packer finds it on NAT and host-only
//! networks: the guest's MAC and network from its `.vmx` ([`guest_nic`]), the network's vmnet
//! devices from VMware's network map ([`NetMap`]: `netmap.conf`, else the `networking` file
//! that Fusion and some Workstation installs keep), then the ISC-format `dhcpd.leases` that
//! VMware's DHCP server writes for each device ([`parse_leases`], [`latest_lease`]).
//! [`Locations`] says where those files are on this host; [`lease_address`] puts it together
//! and, when nothing is found, names every file it looked at. The lease parser takes any
//! input: what it cannot read it skips, so a file being rewritten or hand-edited yields the
//! leases that are whole.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::vmx::{Vmx, VmxError};

/// A MAC address.
pub type Mac = [u8; 6];

/// Why the guest's address cannot come from the leases.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The `.vmx` names no MAC for `ethernet0` (VMware writes `generatedAddress` at power-on).
    #[error("the .vmx has no MAC address for ethernet0 (neither ethernet0.address nor ethernet0.generatedAddress)")]
    NoMac,
    /// The `.vmx`'s MAC is not one.
    #[error("the .vmx's ethernet0 MAC address {0:?} is not a MAC address")]
    BadMac(String),
    /// None of the network map files exists.
    #[error("no VMware network map: looked at {}", list(.looked_at))]
    NoNetMap {
        /// The files tried.
        looked_at: Vec<PathBuf>,
    },
    /// A network map file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `netmap.conf` is not in its `key = "value"` format.
    #[error("cannot parse {}", .path.display())]
    ParseNetMap {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: VmxError,
    },
    /// The network map has no device for the network.
    #[error("{} maps no vmnet device to the network {network:?}", .path.display())]
    UnknownNetwork {
        /// The network's name.
        network: String,
        /// The network map read.
        path: PathBuf,
    },
    /// No leases file has a lease for the MAC.
    #[error("no DHCP lease for {} on {}: looked at {}", mac_text(.mac), .devices.join(", "), list(.looked_at))]
    NoLease {
        /// The guest's MAC.
        mac: Mac,
        /// The vmnet devices searched.
        devices: Vec<String>,
        /// Every leases file tried, present or not.
        looked_at: Vec<PathBuf>,
    },
    /// No DHCP configuration of the network's devices has the host's own entry.
    #[error("no host address for {} in VMware's DHCP configuration: looked at {}", .devices.join(", "), list(.looked_at))]
    NoHostAddress {
        /// The vmnet devices searched.
        devices: Vec<String>,
        /// Every configuration file tried, present or not.
        looked_at: Vec<PathBuf>,
    },
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `00:0c:29:c0:ff:ee`.
pub fn mac_text(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A MAC written as six hex octets separated by `:` or `-`; an octet may have one digit, as
/// some DHCP servers print them.
pub fn parse_mac(text: &str) -> Option<Mac> {
    let text = text.trim();
    let sep = if text.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = text.split(sep);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The network a NIC is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// `nat`, `hostonly` or `bridged` (`ethernet0.connectionType`), looked up by name in the
    /// network map.
    Named(String),
    /// `custom`: the `ethernet0.vnet` device (or a network map name written there).
    Custom(String),
}

impl Network {
    /// Whether the guest is on the host's own LAN: VMware's DHCP server does not lease it an
    /// address, so only VMware Tools know it.
    pub fn is_bridged(&self) -> bool {
        matches!(self, Network::Named(n) if n.eq_ignore_ascii_case("bridged"))
    }
}

/// The guest's first NIC, from its `.vmx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Its MAC: `ethernet0.address` when `ethernet0.addressType` is `static`, else the
    /// `ethernet0.generatedAddress` VMware wrote at power-on (either one when only it is there).
    pub mac: Mac,
    /// Its network.
    pub network: Network,
}

/// The network of `vmx`'s `ethernet0` (NAT when the `.vmx` does not say, as VMware does).
pub fn guest_network(vmx: &Vmx) -> Network {
    let kind = vmx
        .get("ethernet0.connectionType")
        .map(|k| k.trim().to_ascii_lowercase())
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "nat".to_owned());
    match (kind.as_str(), vmx.get("ethernet0.vnet")) {
        ("custom", Some(vnet)) if !vnet.trim().is_empty() => Network::Custom(vnet.trim().into()),
        _ => Network::Named(kind),
    }
}

/// The guest's NIC from its `.vmx`.
pub fn guest_nic(vmx: &Vmx) -> Result<Nic, NetworkError> {
    let value = |k: &str| vmx.get(k).filter(|v| !v.trim().is_empty());
    let is_static =
        value("ethernet0.addressType").is_some_and(|t| t.eq_ignore_ascii_case("static"));
    let (first, second) = if is_static {
        ("ethernet0.address", "ethernet0.generatedAddress")
    } else {
        ("ethernet0.generatedAddress", "ethernet0.address")
    };
    let text = value(first)
        .or_else(|| value(second))
        .ok_or(NetworkError::NoMac)?;
    let mac = parse_mac(&text).ok_or(NetworkError::BadMac(text))?;
    Ok(Nic {
        mac,
        network: guest_network(vmx),
    })
}

/// VMware's network names and their vmnet devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetMap {
    /// `(name, device)`, in the file's order.
    entries: Vec<(String, String)>,
}

impl NetMap {
    /// Workstation's `netmap.conf`: `networkN.name = "NAT"` and `networkN.device = "vmnet8"`
    /// lines, in the `.vmx` syntax.
    pub fn parse_netmap_conf(text: &str) -> Result<NetMap, VmxError> {
        let vmx = Vmx::parse(text)?;
        let mut entries = Vec::new();
        for key in vmx.keys() {
            let Some(prefix) = key
                .len()
                .checked_sub(".name".len())
                .filter(|&n| key.is_char_boundary(n) && key[n..].eq_ignore_ascii_case(".name"))
                .map(|n| &key[..n])
            else {
                continue;
            };
            if let (Some(name), Some(device)) =
                (vmx.get(&key), vmx.get(&format!("{prefix}.device")))
            {
                entries.push((name, device));
            }
        }
        Ok(NetMap { entries })
    }

    /// The `networking` file (Fusion's, and Workstation's when it has no `netmap.conf`):
    /// `answer VNET_<n>_<OPTION> <value>` lines and `add_bridge_mapping <interface> <n>`.
    /// A vmnet with a virtual adapter is `nat` when `VNET_<n>_NAT` is `yes`, else `hostonly`;
    /// one without is bridged; vmnet0, 1 and 8 are bridged, host-only and NAT unless the file
    /// says otherwise, as VMware sets them up. Lines it does not know are skipped.
    pub fn parse_networking(text: &str) -> NetMap {
        use std::collections::BTreeMap;
        let mut answers: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
        let mut kinds: BTreeMap<u32, &str> = [(0, "bridged"), (1, "hostonly"), (8, "nat")].into();
        let vnet_option = |word: &str| -> Option<(u32, String)> {
            let rest = word.strip_prefix("VNET_")?;
            let (n, option) = rest.split_once('_')?;
            Some((n.parse().ok()?, option.to_owned()))
        };
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["answer", key, value, ..] => {
                    if let Some((n, option)) = vnet_option(key) {
                        answers
                            .entry(n)
                            .or_default()
                            .insert(option, (*value).to_owned());
                    }
                }
                ["remove_answer", key, ..] => {
                    if let Some((n, option)) = vnet_option(key) {
                        answers.entry(n).or_default().remove(&option);
                    }
                }
                ["add_bridge_mapping", _, n, ..] => {
                    if let Ok(n) = n.parse() {
                        kinds.insert(n, "bridged");
                    }
                }
                _ => {}
            }
        }
        for (n, a) in &answers {
            let yes = |k: &str| a.get(k).is_some_and(|v| v.eq_ignore_ascii_case("yes"));
            let kind = match (yes("VIRTUAL_ADAPTER"), yes("NAT")) {
                (true, true) => "nat",
                (true, false) => "hostonly",
                (false, _) => "bridged",
            };
            kinds.insert(*n, kind);
        }
        NetMap {
            entries: kinds
                .into_iter()
                .map(|(n, kind)| (kind.to_owned(), format!("vmnet{n}")))
                .collect(),
        }
    }

    /// The devices named `name` (case-insensitive, as VMware writes `NAT` and `HostOnly`).
    pub fn devices(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// One lease of an ISC `dhcpd.leases` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub address: Ipv4Addr,
    /// `hardware ethernet`.
    pub mac: Option<Mac>,
    /// `starts`, as Unix seconds.
    pub starts: Option<i64>,
    /// `ends`, as Unix seconds; `None` also for `ends never`.
    pub ends: Option<i64>,
    /// `binding state` (not `next` or `rewind binding state`), lower-case; VMware's older
    /// DHCP server writes none.
    pub binding_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Semi,
}

/// The file's tokens: words, quoted strings (backslash escapes the next character; an
/// unterminated string runs to the end), braces and semicolons; `#` comments are dropped.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ';' => out.push(Token::Semi),
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => s.extend(chars.next()),
                        c => s.push(c),
                    }
                }
                out.push(Token::Text(s));
            }
            c => {
                let mut s = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push(Token::Word(s));
            }
        }
    }
    out
}

/// One statement of a block: its tokens up to its `;` or its own `{ … }`, and where that
/// block's contents start.
struct Statement {
    tokens: Vec<Token>,
    body: Option<usize>,
}

/// The statements of a block starting at `tokens[*at]`, up to its closing brace (consumed) or,
/// for the file's top level, the end. A statement's own block is skipped (its start kept).
/// `None` when a block never closes: a file cut short mid-lease.
fn block(tokens: &[Token], at: &mut usize, top: bool) -> Option<Vec<Statement>> {
    let mut statements = Vec::new();
    let mut current = Vec::new();
    while let Some(t) = tokens.get(*at) {
        *at += 1;
        match t {
            Token::Semi => statements.push(Statement {
                tokens: std::mem::take(&mut current),
                body: None,
            }),
            Token::Open => {
                let start = *at;
                if !skip_block(tokens, at) {
                    return top.then_some(statements);
                }
                statements.push(Statement {
                    tokens: std::mem::take(&mut current),
                    body: Some(start),
                });
            }
            Token::Close if !top => return Some(statements),
            // A stray brace at the top is noise.
            Token::Close => {}
            t => current.push(t.clone()),
        }
    }
    top.then_some(statements)
}

/// Move past the block whose `{` was just read; whether it closed.
fn skip_block(tokens: &[Token], at: &mut usize) -> bool {
    let mut depth = 1usize;
    while let Some(t) = tokens.get(*at) {
        *at += 1;
        match t {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn word(t: Option<&Token>) -> Option<&str> {
    match t {
        Some(Token::Word(w) | Token::Text(w)) => Some(w),
        _ => None,
    }
}

/// A lease time: `<weekday> YYYY/MM/DD HH:MM:SS` (UTC), `epoch <seconds>` (with
/// `db-time-format local`) or `never` (`None`).
fn lease_time(words: &[Token]) -> Option<i64> {
    match (word(words.first()), word(words.get(1)), word(words.get(2))) {
        (Some("epoch"), Some(secs), _) => secs.parse().ok(),
        (Some(_weekday), Some(date), Some(time)) => {
            chrono::NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y/%m/%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc().timestamp())
        }
        _ => None,
    }
}

/// The leases in an ISC `dhcpd.leases` file, in file order. Lease blocks that do not close
/// (a file cut short), addresses that are not IPv4 and statements it does not know are
/// skipped; nothing in the input makes it fail.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    let tokens = tokens(text);
    let mut at = 0;
    let top = block(&tokens, &mut at, true).unwrap_or_default();
    let mut leases = Vec::new();
    for statement in top {
        let (Some("lease"), Some(address), None, Some(mut start)) = (
            word(statement.tokens.first()),
            word(statement.tokens.get(1)),
            statement.tokens.get(2),
            statement.body,
        ) else {
            continue;
        };
        let Ok(address) = address.parse::<Ipv4Addr>() else {
            continue;
        };
        let Some(body) = block(&tokens, &mut start, false) else {
            continue;
        };
        let mut lease = Lease {
            address,
            mac: None,
            starts: None,
            ends: None,
            binding_state: None,
        };
        for Statement { tokens: s, .. } in body {
            match (word(s.first()), word(s.get(1))) {
                (Some("starts"), _) => lease.starts = lease_time(&s[1..]),
                (Some("ends"), _) => lease.ends = lease_time(&s[1..]),
                (Some("hardware"), Some("ethernet")) => {
                    lease.mac = word(s.get(2)).and_then(parse_mac);
                }
                (Some("binding"), Some("state")) => {
                    lease.binding_state = word(s.get(2)).map(str::to_ascii_lowercase);
                }
                _ => {}
            }
        }
        leases.push(lease);
    }
    leases
}

/// The address of `mac`'s latest lease at `now` (Unix seconds): leases not in use (`binding
/// state` free, released, expired, abandoned, backup) are passed over; a lease current at
/// `now` beats one that is not (as in Packer, an expired lease is still a guess); then the
/// latest `starts`, then the one written last (dhcpd appends).
pub fn latest_lease(leases: &[Lease], mac: &Mac, now: i64) -> Option<Ipv4Addr> {
    latest(leases, mac, now)
        .and_then(|n| leases.get(n))
        .map(|l| l.address)
}

/// The index of [`latest_lease`]'s lease.
fn latest(leases: &[Lease], mac: &Mac, now: i64) -> Option<usize> {
    leases
        .iter()
        .enumerate()
        .filter(|(_, l)| l.mac.as_ref() == Some(mac))
        .filter(|(_, l)| l.binding_state.as_deref().is_none_or(|s| s == "active"))
        .max_by_key(|(n, l)| {
            let current = l.starts.is_none_or(|s| s <= now) && l.ends.is_none_or(|e| now < e);
            (current, l.starts.unwrap_or(i64::MIN), *n)
        })
        .map(|(n, _)| n)
}

/// Where VMware keeps its network map and DHCP leases on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The directory of `netmap.conf` / `networking` (and, on Workstation, of the per-device
    /// DHCP directories).
    pub config: PathBuf,
    /// Fusion keeps the leases apart, as `<dir>/vmnet-dhcpd-<device>.leases`.
    pub fusion_leases: Option<PathBuf>,
}

impl Locations {
    /// This host's: Fusion's on macOS, Workstation's (`/etc/vmware`) elsewhere, as Packer has
    /// them. Windows is not a kiln host.
    pub fn host() -> Self {
        if cfg!(target_os = "macos") {
            Self {
                config: "/Library/Preferences/VMware Fusion".into(),
                fusion_leases: Some("/var/db/vmware".into()),
            }
        } else {
            Self::workstation("/etc/vmware")
        }
    }

    /// Workstation's layout under `config`.
    pub fn workstation(config: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            fusion_leases: None,
        }
    }

    /// The network map files, in the order read: the first present one is used.
    pub fn netmap_files(&self) -> Vec<PathBuf> {
        vec![
            self.config.join("netmap.conf"),
            self.config.join("networking"),
        ]
    }

    /// The leases files VMware's DHCP server may write for `device`.
    pub fn lease_files(&self, device: &str) -> Vec<PathBuf> {
        match &self.fusion_leases {
            Some(dir) => vec![dir.join(format!("vmnet-dhcpd-{device}.leases"))],
            None => ["dhcp", "dhcpd"]
                .iter()
                .flat_map(|d| ["dhcp.leases", "dhcpd.leases"].map(|f| Path::new(d).join(f)))
                .map(|f| self.config.join(device).join(f))
                .collect(),
        }
    }

    /// The DHCP configuration files VMware may write for `device` (Fusion's beside its
    /// network map, Workstation's in the device's DHCP directory).
    pub fn dhcp_conf_files(&self, device: &str) -> Vec<PathBuf> {
        let dir = self.config.join(device);
        match &self.fusion_leases {
            Some(_) => vec![dir.join("dhcpd.conf")],
            None => ["dhcp", "dhcpd"]
                .iter()
                .flat_map(|d| ["dhcp.conf", "dhcpd.conf"].map(|f| Path::new(d).join(f)))
                .map(|f| dir.join(f))
                .collect(),
        }
    }

    /// The network map: the first of [`Locations::netmap_files`] that exists.
    pub fn netmap(&self) -> Result<(NetMap, PathBuf), NetworkError> {
        let files = self.netmap_files();
        for path in &files {
            let text = match std::fs::read(path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(NetworkError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            };
            let map = if path.ends_with("networking") {
                NetMap::parse_networking(&text)
            } else {
                NetMap::parse_netmap_conf(&text).map_err(|source| NetworkError::ParseNetMap {
                    path: path.clone(),
                    source,
                })?
            };
            return Ok((map, path.clone()));
        }
        Err(NetworkError::NoNetMap { looked_at: files })
    }

    /// The vmnet devices of `network`: a named network's from the network map; a custom one's
    /// `vnet` (or the devices of the map name written there).
    pub fn devices(&self, network: &Network) -> Result<Vec<String>, NetworkError> {
        match network {
            Network::Custom(vnet) => {
                let named = self
                    .netmap()
                    .map(|(m, _)| m.devices(vnet))
                    .unwrap_or_default();
                Ok(if named.is_empty() {
                    vec![vnet.clone()]
                } else {
                    named
                })
            }
            Network::Named(name) => {
                let (map, path) = self.netmap()?;
                let devices = map.devices(name);
                if devices.is_empty() {
                    return Err(NetworkError::UnknownNetwork {
                        network: name.clone(),
                        path,
                    });
                }
                Ok(devices)
            }
        }
    }
}

/// The `fixed-address` of the `host <device> { … }` entry in a VMware DHCP configuration
/// (`dhcpd.conf`): the host's own address on that vmnet, which VMware writes there.
pub fn parse_host_address(text: &str, device: &str) -> Option<Ipv4Addr> {
    let tokens = tokens(text);
    let mut at = 0;
    let top = block(&tokens, &mut at, true).unwrap_or_default();
    top.into_iter()
        .filter(|s| {
            word(s.tokens.first()) == Some("host")
                && word(s.tokens.get(1)).is_some_and(|d| d.eq_ignore_ascii_case(device))
        })
        .filter_map(|s| {
            let mut start = s.body?;
            block(&tokens, &mut start, false)
        })
        .flatten()
        .find_map(|s| match word(s.tokens.first()) {
            Some("fixed-address") => word(s.tokens.get(1))?.parse().ok(),
            _ => None,
        })
}

/// The host's address on the vmnet of `network`, as Packer finds it (its driver's `HostIP`):
/// `None` on a bridged network, where the guest is on the host's own LAN; else the
/// `fixed-address` of the device's `host` entry in VMware's DHCP configuration.
pub fn host_address(loc: &Locations, network: &Network) -> Result<Option<Ipv4Addr>, NetworkError> {
    if network.is_bridged() {
        return Ok(None);
    }
    let devices = loc.devices(network)?;
    let bridged = loc
        .netmap()
        .map(|(m, _)| m.devices("bridged"))
        .unwrap_or_default();
    let mut looked_at = Vec::new();
    for device in &devices {
        if bridged.contains(device) {
            return Ok(None);
        }
        for path in loc.dhcp_conf_files(device) {
            if let Ok(bytes) = std::fs::read(&path) {
                if let Some(ip) = parse_host_address(&String::from_utf8_lossy(&bytes), device) {
                    return Ok(Some(ip));
                }
            }
            looked_at.push(path);
        }
    }
    Err(NetworkError::NoHostAddress { devices, looked_at })
}

/// The address VMware's DHCP server leased `nic` at `now` (Unix seconds), from the leases
/// files of its network's devices. Files that are missing or unreadable count as empty, so a
/// guest still booting is "no lease yet"; the error names every file looked at.
pub fn lease_address(
    loc: &Locations,
    nic: &Nic,
    now: i64,
) -> Result<(Ipv4Addr, PathBuf), NetworkError> {
    let devices = loc.devices(&nic.network)?;
    let mut looked_at = Vec::new();
    // Each lease with the file it came from.
    let (mut leases, mut files) = (Vec::new(), Vec::new());
    for device in &devices {
        for path in loc.lease_files(device) {
            if let Ok(bytes) = std::fs::read(&path) {
                let found = parse_leases(&String::from_utf8_lossy(&bytes));
                files.extend(std::iter::repeat_n(path.clone(), found.len()));
                leases.extend(found);
            }
            looked_at.push(path);
        }
    }
    latest(&leases, &nic.mac, now)
        .and_then(|n| Some((leases.get(n)?.address, files.get(n)?.clone())))
        .ok_or(NetworkError::NoLease {
            mac: nic.mac,
            devices,
            looked_at,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x00, 0x0c, 0x29, 0xc0, 0xff, 0xee];

    #[test]
    fn macs_parse_in_the_spellings_vmware_and_dhcpd_write() {
        assert_eq!(parse_mac("00:0c:29:c0:ff:ee"), Some(MAC));
        assert_eq!(parse_mac("00-0C-29-C0-FF-EE"), Some(MAC));
        assert_eq!(parse_mac("0:c:29:c0:ff:ee"), Some(MAC));
        for bad in [
            "",
            "00:0c:29:c0:ff",
            "00:0c:29:c0:ff:ee:01",
            "00:0c:29:c0:ff:gg",
            "000:c:29:c0:ff:ee",
            "é:0c:29:c0:ff:ee",
            "::::::",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
        assert_eq!(mac_text(&MAC), "00:0c:29:c0:ff:ee");
    }

    #[test]
    fn the_nic_is_the_static_address_or_the_generated_one() {
        let vmx = |t: &str| Vmx::parse(t).unwrap();
        let nic = guest_nic(&vmx(
            "ethernet0.addressType = \"static\"\nethernet0.address = \"00:50:56:00:00:01\"\nethernet0.generatedAddress = \"00:0c:29:c0:ff:ee\"\nethernet0.connectionType = \"hostonly\"\n",
        ))
        .unwrap();
        assert_eq!(nic.mac, [0x00, 0x50, 0x56, 0, 0, 1]);
        assert_eq!(nic.network, Network::Named("hostonly".into()));
        let nic = guest_nic(&vmx(
            "ethernet0.addressType = \"generated\"\nethernet0.address = \"00:50:56:00:00:01\"\nethernet0.generatedAddress = \"00:0c:29:c0:ff:ee\"\n",
        ))
        .unwrap();
        assert_eq!(nic.mac, MAC);
        assert_eq!(nic.network, Network::Named("nat".into()));
        let nic = guest_nic(&vmx(
            "ethernet0.generatedAddress = \"00:0c:29:c0:ff:ee\"\nethernet0.connectionType = \"custom\"\nethernet0.vnet = \"vmnet5\"\n",
        ))
        .unwrap();
        assert_eq!(nic.network, Network::Custom("vmnet5".into()));
        assert!(Network::Named("Bridged".into()).is_bridged());
        assert!(matches!(
            guest_nic(&vmx("ethernet0.addressType = \"generated\"\n")),
            Err(NetworkError::NoMac)
        ));
        assert!(matches!(
            guest_nic(&vmx("ethernet0.generatedAddress = \"nope\"\n")),
            Err(NetworkError::BadMac(m)) if m == "nope"
        ));
    }

    #[test]
    fn netmap_conf_maps_names_to_devices() {
        let map = NetMap::parse_netmap_conf(
            "# This file is automatically generated.\n# Hand-editing this file is not recommended.\nnetwork0.name = \"Bridged\"\nnetwork0.device = \"vmnet0\"\nnetwork1.name = \"HostOnly\"\nnetwork1.device = \"vmnet1\"\nnetwork8.name = \"NAT\"\nnetwork8.device = \"vmnet8\"\nnetwork9.name = \"NAT\"\nnetwork9.device = \"vmnet9\"\nnetwork2.name = \"VMNet2\"\n",
        )
        .unwrap();
        assert_eq!(map.devices("nat"), ["vmnet8", "vmnet9"]);
        assert_eq!(map.devices("hostonly"), ["vmnet1"]);
        assert_eq!(map.devices("bridged"), ["vmnet0"]);
        assert!(map.devices("VMNet2").is_empty(), "a name without a device");
    }

    #[test]
    fn the_networking_file_maps_nat_hostonly_and_bridges() {
        let map = NetMap::parse_networking(
            "VERSION=1,0\nanswer VNET_1_DHCP yes\nanswer VNET_1_HOSTONLY_SUBNET 192.168.70.0\nanswer VNET_1_NAT no\nanswer VNET_1_VIRTUAL_ADAPTER yes\nanswer VNET_2_NAT yes\nanswer VNET_2_VIRTUAL_ADAPTER yes\nanswer VNET_8_NAT yes\nanswer VNET_8_VIRTUAL_ADAPTER yes\nremove_answer VNET_2_NAT\nadd_bridge_mapping en0 3\nanswer VNET_x_NAT yes\nanswer\ngarbage \u{0} line\n",
        );
        assert_eq!(map.devices("nat"), ["vmnet8"]);
        assert_eq!(map.devices("hostonly"), ["vmnet1", "vmnet2"]);
        assert_eq!(map.devices("bridged"), ["vmnet0", "vmnet3"]);
        assert_eq!(NetMap::parse_networking("").devices("nat"), ["vmnet8"]);
    }

    const LEASES: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\000\001\000\001,\344\326\262RT\000\022\0245";

lease 172.16.41.129 {
  starts 3 2024/05/01 10:00:00;
  ends 3 2024/05/01 10:30:00;
  cltt 3 2024/05/01 10:00:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 00:0c:29:c0:ff:ee;
  uid "\001\000\014)\300\377\356";
  client-hostname "vm; with {braces} # and a hash";
}
lease 172.16.41.130 {
  starts 3 2024/05/01 10:10:00;
  ends 3 2024/05/01 10:40:00;
  binding state active;
  next binding state free;
  hardware ethernet 00:0c:29:c0:ff:ee;
  on commit { set x = "}"; execute("y"); }
}
lease 172.16.41.131 {
  starts 3 2024/05/01 10:20:00;
  ends 3 2024/05/01 10:50:00;
  binding state free;
  hardware ethernet 00:0c:29:c0:ff:ee;
}
lease 172.16.41.140 {
  starts 3 2024/05/01 10:20:00;
  ends never;
  hardware ethernet 00:0c:29:00:00:01;
}
"#;

    fn at(text: &str) -> i64 {
        chrono::NaiveDateTime::parse_from_str(text, "%Y/%m/%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp()
    }

    #[test]
    fn the_latest_active_lease_for_the_mac_wins() {
        let leases = parse_leases(LEASES);
        assert_eq!(leases.len(), 4, "{leases:?}");
        assert_eq!(leases[0].binding_state.as_deref(), Some("active"));
        assert_eq!(leases[0].starts, Some(at("2024/05/01 10:00:00")));
        assert_eq!(leases[3].ends, None);
        let now = at("2024/05/01 10:25:00");
        // .131 is later but free; .130 started after .129.
        assert_eq!(
            latest_lease(&leases, &MAC, now),
            Some("172.16.41.130".parse().unwrap())
        );
        // After .130 ended and before .129 did not... both expired: still the latest.
        assert_eq!(
            latest_lease(&leases, &MAC, at("2024/06/01 00:00:00")),
            Some("172.16.41.130".parse().unwrap())
        );
        // A current lease beats a later one that is not current yet.
        assert_eq!(
            latest_lease(&leases, &MAC, at("2024/05/01 10:05:00")),
            Some("172.16.41.129".parse().unwrap())
        );
        assert_eq!(
            latest_lease(&leases, &[0, 0x0c, 0x29, 0, 0, 1], now),
            Some("172.16.41.140".parse().unwrap())
        );
        assert_eq!(latest_lease(&leases, &[1, 2, 3, 4, 5, 6], now), None);
    }

    #[test]
    fn vmwares_older_dhcpd_format_and_epoch_times_are_read() {
        // vmnet-dhcpd (ISC 2.0) writes no binding state; `db-time-format local` writes epochs.
        let text = "lease 192.168.70.128 {\n\tstarts 4 2024/05/02 08:00:00;\n\tends 4 2024/05/02 08:30:00;\n\thardware ethernet 00:0c:29:c0:ff:ee;\n}\nlease 192.168.70.129 {\n\tstarts epoch 1714640000; # Thu May 02 ...\n\tends epoch 1714641800;\n\thardware ethernet 00:0c:29:c0:ff:ee;\n\tclient-hostname \"x\";\n}\n";
        let leases = parse_leases(text);
        assert_eq!(leases[1].starts, Some(1_714_640_000));
        assert_eq!(
            latest_lease(&leases, &MAC, 1_714_640_100),
            Some("192.168.70.129".parse().unwrap())
        );
    }

    #[test]
    fn nasty_leases_files_never_panic_and_keep_the_whole_leases() {
        let whole = "lease 10.0.0.5 { hardware ethernet 00:0c:29:c0:ff:ee; starts 1 2024/01/01 00:00:00; }\n";
        let nasty = [
            "",
            "}",
            "{",
            "lease",
            "lease 10.0.0.1",
            "lease 10.0.0.1 {",
            "lease 10.0.0.1 { hardware ethernet 00:0c:29:c0:ff:ee;",
            "lease 10.0.0.1 { hardware",
            "lease 10.0.0.1 { starts; ends 1; starts 9 9999/99/99 99:99:99; ends epoch x; }",
            "lease 10.0.0.1 { binding; hardware ethernet; hardware ethernet zz; }",
            "lease not-an-ip { hardware ethernet 00:0c:29:c0:ff:ee; }",
            "lease fe80::1 { hardware ethernet 00:0c:29:c0:ff:ee; }",
            "lease \"10.0.0.1 { }",
            "\"unterminated",
            "\"\\",
            "# only a comment",
            "lease 10.0.0.1 { { { } } } }}}} ;;; {{",
            "\u{feff}\u{0}\u{7f}ünïcödé {; } \r\n\r\n",
            "ia-na \"\\001\" { cltt 1 2024/01/01 00:00:00; iaaddr 2001:db8::1 { binding state active; } }",
        ];
        for n in nasty {
            let _ = parse_leases(n);
            // A whole lease after the noise is found unless the noise swallows it.
            let leases = parse_leases(&format!("{n}\n{whole}"));
            let _ = latest_lease(&leases, &MAC, 0);
        }
        // A block cut short is dropped; a whole one before it is kept.
        let cut = format!("{whole}lease 10.0.0.9 {{ hardware ethernet 00:0c:29:c0:ff:ee;");
        let leases = parse_leases(&cut);
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].address, Ipv4Addr::new(10, 0, 0, 5));
        // Unknown statements and blocks around a lease are skipped.
        let leases = parse_leases(&format!(
            "failover peer \"x\" state {{ my state normal; }}\nfoo bar;\n}}\n{whole}"
        ));
        assert_eq!(leases.len(), 1);
        // Every byte prefix of a real file parses.
        for end in 0..=LEASES.len() {
            if LEASES.is_char_boundary(end) {
                let _ = parse_leases(&LEASES[..end]);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "(lease|[0-9.]{1,9}|[{};#\"\\\\]|[a-z: ]{0,12}|\\PC){0,40}") {
            let leases = parse_leases(&text);
            let _ = latest_lease(&leases, &MAC, 0);
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn the_lease_is_found_through_the_netmap_and_misses_name_every_file() {
        let t = tempfile::tempdir().unwrap();
        let loc = Locations::workstation(t.path());
        let nic = Nic {
            mac: MAC,
            network: Network::Named("nat".into()),
        };
        let e = lease_address(&loc, &nic, 0).unwrap_err().to_string();
        assert!(e.contains("netmap.conf") && e.contains("networking"), "{e}");

        write(
            &t.path().join("netmap.conf"),
            "network8.name = \"NAT\"\nnetwork8.device = \"vmnet8\"\n",
        );
        let e = lease_address(&loc, &nic, 0).unwrap_err().to_string();
        for f in [
            "dhcp/dhcp.leases",
            "dhcp/dhcpd.leases",
            "dhcpd/dhcp.leases",
            "dhcpd/dhcpd.leases",
        ] {
            assert!(e.contains(&format!("vmnet8/{f}")), "{f}: {e}");
        }
        assert!(e.contains("00:0c:29:c0:ff:ee"), "{e}");

        let leases = t.path().join("vmnet8/dhcpd/dhcpd.leases");
        write(&leases, LEASES);
        let (ip, from) = lease_address(&loc, &nic, at("2024/05/01 10:25:00")).unwrap();
        assert_eq!(ip, Ipv4Addr::new(172, 16, 41, 130));
        assert_eq!(from, leases);

        let hostonly = Nic {
            mac: MAC,
            network: Network::Named("hostonly".into()),
        };
        let e = lease_address(&loc, &hostonly, 0).unwrap_err();
        assert!(matches!(e, NetworkError::UnknownNetwork { .. }), "{e}");

        // A custom network is its vnet, netmap or not.
        write(&t.path().join("vmnet5/dhcp/dhcp.leases"), LEASES);
        let custom = Nic {
            mac: MAC,
            network: Network::Custom("vmnet5".into()),
        };
        assert_eq!(
            lease_address(&loc, &custom, at("2024/05/01 10:25:00"))
                .unwrap()
                .0,
            Ipv4Addr::new(172, 16, 41, 130)
        );
    }

    /// VMware's own `dhcpd.conf` for vmnet8, cut down: the subnet, then the host's entry.
    const DHCPD_CONF: &str = "# Configuration file for ISC 2.0 vmnet-dhcpd operating on vmnet8.\n\
        allow unknown-clients;\n\
        default-lease-time 1800;\n\
        subnet 172.16.41.0 netmask 255.255.255.0 {\n\
        \trange 172.16.41.128 172.16.41.254;\n\
        \toption routers 172.16.41.2;\n\
        }\n\
        host vmnet8 {\n\
        \thardware ethernet 00:50:56:C0:00:08;\n\
        \tfixed-address 172.16.41.1;\n\
        \toption domain-name-servers 0.0.0.0;\n\
        }\n";

    #[test]
    fn the_host_address_is_the_vmnets_fixed_address_or_none_when_bridged() {
        assert_eq!(
            parse_host_address(DHCPD_CONF, "vmnet8"),
            Some(Ipv4Addr::new(172, 16, 41, 1))
        );
        assert_eq!(parse_host_address(DHCPD_CONF, "vmnet1"), None);
        assert_eq!(
            parse_host_address("host vmnet8 { fixed-address", "vmnet8"),
            None
        );

        let t = tempfile::tempdir().unwrap();
        let loc = Locations::workstation(t.path());
        write(
            &t.path().join("netmap.conf"),
            "network0.name = \"Bridged\"\nnetwork0.device = \"vmnet0\"\n\
             network8.name = \"NAT\"\nnetwork8.device = \"vmnet8\"\n",
        );
        let nat = Network::Named("nat".into());
        let e = host_address(&loc, &nat).unwrap_err().to_string();
        assert!(e.contains("vmnet8/dhcpd/dhcpd.conf"), "{e}");
        write(&t.path().join("vmnet8/dhcpd/dhcpd.conf"), DHCPD_CONF);
        assert_eq!(
            host_address(&loc, &nat).unwrap(),
            Some(Ipv4Addr::new(172, 16, 41, 1))
        );
        // Bridged, by name or as a custom vnet the map says is bridged: the host's LAN.
        assert_eq!(
            host_address(&loc, &Network::Named("bridged".into())).unwrap(),
            None
        );
        assert_eq!(
            host_address(&loc, &Network::Custom("vmnet0".into())).unwrap(),
            None
        );
    }

    #[test]
    fn fusion_keeps_its_leases_apart() {
        let loc = Locations {
            config: "/prefs".into(),
            fusion_leases: Some("/var/db/vmware".into()),
        };
        assert_eq!(
            loc.lease_files("vmnet8"),
            [PathBuf::from("/var/db/vmware/vmnet-dhcpd-vmnet8.leases")]
        );
        assert_eq!(loc.netmap_files()[1], PathBuf::from("/prefs/networking"));
        assert_eq!(
            loc.dhcp_conf_files("vmnet8"),
            [PathBuf::from("/prefs/vmnet8/dhcpd.conf")]
        );
    }
}
