//! Human units in the config: durations ("5m", "1h30m"), sizes ("50MB") and
//! networks ("10.0.0.0/8"). Each refuses bad input with a message that serde
//! attaches to the right line.

use serde::{Deserialize, Deserializer, de::Error};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// `"90s"`, `"5m"`, `"1h30m"`, `"5d"`, `"250ms"`, `"0"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("invalid duration {s:?}: use a number with a unit, e.g. \"30s\", \"5m\", \"2h\", \"5d\"");
        if s == "0" {
            return Ok(Duration::secs(0));
        }
        let mut total_ms: u128 = 0;
        let mut rest = s;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad());
            }
            let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let ms = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            total_ms = total_ms.checked_add(n.checked_mul(ms).ok_or_else(bad)?).ok_or_else(bad)?;
            rest = &rest[unit_len..];
        }
        let ms = u64::try_from(total_ms).map_err(|_| bad())?;
        Ok(Duration(std::time::Duration::from_millis(ms)))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(D::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `"50MB"`, `"512KiB"`, `"1G"`, `"1000"`; SI units are powers of 1000.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || format!("invalid size {s:?}: use e.g. \"50MB\", \"512KiB\" or a number of bytes");
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..digits].parse().map_err(|_| bad())?;
        let mult: u64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" => 1000,
            "M" | "MB" => 1000 * 1000,
            "G" | "GB" => 1000 * 1000 * 1000,
            "T" | "TB" => 1000 * 1000 * 1000 * 1000,
            "KIB" => 1 << 10,
            "MIB" => 1 << 20,
            "GIB" => 1 << 30,
            "TIB" => 1 << 40,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(D::Error::custom),
        }
    }
}

/// Free space kept back on the data disk: a size (`"1GB"`) or a share of
/// the file system (`"5%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    Bytes(u64),
    Percent(f64),
}

impl Reserve {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(Reserve::Percent(p)),
                _ => Err(format!("invalid share {s:?}: use a percentage from 0% to 100%, e.g. \"5%\"")),
            },
            None => ByteSize::parse(t).map(|b| Reserve::Bytes(b.0)),
        }
    }

    /// The reserve in bytes on a file system of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match *self {
            Reserve::Bytes(b) => b,
            Reserve::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

impl<'de> Deserialize<'de> for Reserve {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Reserve::Bytes(n)),
            Raw::S(s) => Reserve::parse(&s).map_err(D::Error::custom),
        }
    }
}

/// An IP network in CIDR notation; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid network {s:?}: use CIDR notation such as \"10.0.0.0/8\"");
        let (a, p) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() { max } else { p.parse().map_err(|_| bad())? };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IpNet::parse(&s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("5m").unwrap().0.as_secs(), 300);
        assert_eq!(Duration::parse("1h30m").unwrap().0.as_secs(), 5400);
        assert_eq!(Duration::parse("0s").unwrap().0.as_secs(), 0);
        assert_eq!(Duration::parse("250ms").unwrap().0.as_millis(), 250);
        for bad in ["", "5", "m", "5 min", "-1s", "99999999999999999999d"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("50MB").unwrap().0, 50_000_000);
        assert_eq!(ByteSize::parse("1KiB").unwrap().0, 1024);
        assert!(ByteSize::parse("12XB").is_err());
    }

    #[test]
    fn reserves() {
        assert_eq!(Reserve::parse("1GB").unwrap().bytes(0), 1_000_000_000);
        assert_eq!(Reserve::parse("5%").unwrap().bytes(2_000), 100);
        assert_eq!(Reserve::parse("0").unwrap().bytes(1 << 40), 0);
        for bad in ["101%", "-1%", "x%", "1XB"] {
            assert!(Reserve::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        let net = IpNet::parse("127.0.0.0/8").unwrap();
        assert!(net.contains("127.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!net.contains("128.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
    }
}
