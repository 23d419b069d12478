//! IP network functions: cidrhost, cidrnetmask, cidrsubnet, cidrsubnets, for IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

use super::args::{integer, string, FnResult};
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let s = ParamType::String;
    let n = ParamType::Number;
    ctx.declare_func(
        "cidrhost",
        FuncDef::new(hcl_fn!(cidrhost), [s.clone(), n.clone()]),
    );
    ctx.declare_func(
        "cidrnetmask",
        FuncDef::new(hcl_fn!(cidrnetmask), [s.clone()]),
    );
    ctx.declare_func(
        "cidrsubnet",
        FuncDef::new(hcl_fn!(cidrsubnet), [s.clone(), n.clone(), n.clone()]),
    );
    ctx.declare_func(
        "cidrsubnets",
        FuncDef::builder()
            .param(s)
            .variadic_param(n)
            .build(hcl_fn!(cidrsubnets)),
    );
}

/// A network as an address (as a number), its width in bits (32 or 128) and prefix length.
struct Net {
    addr: u128,
    bits: u32,
    prefix: u32,
}

impl Net {
    fn parse(s: &str) -> Result<Net, FnError> {
        let err = || FnError::Cidr(s.to_owned());
        let (ip, len) = s.split_once('/').ok_or_else(err)?;
        let ip: IpAddr = ip.parse().map_err(|_| err())?;
        let prefix: u32 = len.parse().map_err(|_| err())?;
        let (addr, bits) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        if prefix > bits {
            return Err(err());
        }
        let net = Net { addr, bits, prefix };
        Ok(Net {
            addr: addr & net.mask(),
            ..net
        })
    }

    fn mask(&self) -> u128 {
        let all = if self.bits == 32 {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        if self.prefix == 0 {
            0
        } else {
            all & !(all >> self.prefix)
        }
    }

    fn host_bits(&self) -> u32 {
        self.bits - self.prefix
    }

    fn ip(&self, addr: u128) -> String {
        if self.bits == 32 {
            Ipv4Addr::from(addr as u32).to_string()
        } else {
            Ipv6Addr::from(addr).to_string()
        }
    }

    fn subnet(&self, newbits: i64, netnum: i64) -> Result<Net, FnError> {
        let newbits = u32::try_from(newbits).map_err(|_| FnError::Negative("newbits"))?;
        let prefix = self.prefix + newbits;
        if prefix > self.bits {
            return Err(FnError::PrefixTooLong {
                prefix: self.prefix,
                newbits,
                available: self.host_bits(),
            });
        }
        let netnum = u128::try_from(netnum).map_err(|_| FnError::Negative("netnum"))?;
        if newbits < 128 && netnum >> newbits != 0 {
            return Err(FnError::NetnumTooLarge { netnum, newbits });
        }
        Ok(Net {
            addr: self.addr | netnum.checked_shl(self.bits - prefix).unwrap_or(0),
            bits: self.bits,
            prefix,
        })
    }

    fn to_cidr(&self) -> String {
        format!("{}/{}", self.ip(self.addr), self.prefix)
    }
}

fn cidrhost(a: FuncArgs) -> FnResult {
    let net = Net::parse(string(&a[0])?)?;
    let hostnum = integer(&a[1])?;
    let size: u128 = if net.host_bits() >= 128 {
        u128::MAX
    } else {
        1u128 << net.host_bits()
    };
    let offset = if hostnum < 0 {
        size.checked_sub(u128::from(hostnum.unsigned_abs()))
    } else {
        Some(hostnum as u128).filter(|&h| h < size)
    }
    .ok_or_else(|| FnError::HostOutside {
        host: hostnum,
        network: net.to_cidr(),
    })?;
    Ok(net.ip(net.addr + offset).into())
}

fn cidrnetmask(a: FuncArgs) -> FnResult {
    let net = Net::parse(string(&a[0])?)?;
    if net.bits != 32 {
        return Err(FnError::NetmaskOfIpv6);
    }
    Ok(net.ip(net.mask()).into())
}

fn cidrsubnet(a: FuncArgs) -> FnResult {
    let net = Net::parse(string(&a[0])?)?;
    Ok(net
        .subnet(integer(&a[1])?, integer(&a[2])?)?
        .to_cidr()
        .into())
}

/// Consecutive subnets of the given sizes, each aligned to its own size.
fn cidrsubnets(a: FuncArgs) -> FnResult {
    let net = Net::parse(string(&a[0])?)?;
    let mut next: u128 = net.addr;
    let end: u128 = net.addr
        + if net.host_bits() >= 128 {
            u128::MAX - net.addr
        } else {
            (1u128 << net.host_bits()) - 1
        };
    let mut out = Vec::new();
    for nb in &a[1..] {
        let newbits = integer(nb)?;
        let sub = net.subnet(newbits, 0)?;
        let size = 1u128
            .checked_shl(net.bits - sub.prefix)
            .ok_or(FnError::SubnetTooLarge)?;
        let start = next.div_ceil(size) * size;
        if start > end || start + (size - 1) > end {
            return Err(FnError::NoRoom(net.to_cidr()));
        }
        out.push(Value::from(Net { addr: start, ..sub }.to_cidr()));
        next = start + size;
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, json, ok};
    use hcl::Value;

    #[test]
    fn ipv4() {
        assert_eq!(
            ok(r#"cidrhost("10.12.0.0/16", 5)"#),
            Value::from("10.12.0.5")
        );
        assert_eq!(
            ok(r#"cidrhost("10.12.0.0/16", -2)"#),
            Value::from("10.12.255.254")
        );
        assert!(eval(r#"cidrhost("10.0.0.0/30", 4)"#).is_err());
        assert_eq!(
            ok(r#"cidrnetmask("192.168.4.0/22")"#),
            Value::from("255.255.252.0")
        );
        assert_eq!(
            ok(r#"cidrsubnet("172.20.0.0/16", 4, 3)"#),
            Value::from("172.20.48.0/20")
        );
        assert!(eval(r#"cidrsubnet("10.0.0.0/30", 4, 0)"#).is_err());
        assert_eq!(
            json(r#"cidrsubnets("10.1.0.0/16", 8, 4, 8)"#),
            r#"["10.1.0.0/24","10.1.16.0/20","10.1.32.0/24"]"#
        );
        assert!(eval(r#"cidrhost("nonsense", 1)"#).is_err());
    }

    #[test]
    fn ipv6() {
        assert_eq!(
            ok(r#"cidrhost("fd00:1::/64", 17)"#),
            Value::from("fd00:1::11")
        );
        assert_eq!(
            ok(r#"cidrsubnet("fd00::/56", 8, 2)"#),
            Value::from("fd00:0:0:2::/64")
        );
        assert!(eval(r#"cidrnetmask("fd00::/64")"#).is_err());
        assert_eq!(ok(r#"cidrsubnet("::/0", 0, 0)"#), Value::from("::/0"));
        assert!(eval(r#"cidrsubnets("::/0", 0)"#).is_err());
    }
}
