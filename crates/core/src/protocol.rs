//! The protocols an endpoint or target speaks, as Route 53 Resolver names them.

use std::fmt;
use std::str::FromStr;

/// One DNS transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Classic DNS over UDP and TCP (RFC 1035, RFC 7766).
    Do53,
    /// DNS over HTTPS (RFC 8484).
    DoH,
    /// DNS over HTTPS whose TLS uses only a FIPS 140-3 validated module.
    DohFips,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Do53, Protocol::DoH, Protocol::DohFips];

    /// The lower-case name used in configuration files, metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Do53 => "do53",
            Protocol::DoH => "doh",
            Protocol::DohFips => "doh-fips",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Protocol::Do53 => 1,
            Protocol::DoH => 2,
            Protocol::DohFips => 4,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a protocol name that is not one of `do53`, `doh`, `doh-fips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProtocol(pub String);

impl fmt::Display for UnknownProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown protocol {:?} (expected do53, doh or doh-fips)",
            self.0
        )
    }
}

impl std::error::Error for UnknownProtocol {}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "do53" => Ok(Protocol::Do53),
            "doh" => Ok(Protocol::DoH),
            "doh-fips" | "dohfips" | "doh_fips" => Ok(Protocol::DohFips),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// A set of protocols, as carried by an inbound or outbound endpoint.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    pub const EMPTY: ProtocolSet = ProtocolSet(0);
    pub const ALL: ProtocolSet = ProtocolSet(7);

    pub fn insert(&mut self, p: Protocol) {
        self.0 |= p.bit();
    }

    pub const fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        Protocol::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Protocol> for ProtocolSet {
    fn from_iter<I: IntoIterator<Item = Protocol>>(iter: I) -> Self {
        let mut set = ProtocolSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for ProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for ProtocolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Protocol::as_str).collect();
        f.write_str(&names.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route53_names_case_insensitively() {
        assert_eq!("Do53".parse::<Protocol>(), Ok(Protocol::Do53));
        assert_eq!("DoH".parse::<Protocol>(), Ok(Protocol::DoH));
        assert_eq!("DoH-FIPS".parse::<Protocol>(), Ok(Protocol::DohFips));
        assert!("dot".parse::<Protocol>().is_err());
    }

    #[test]
    fn set_membership_and_display() {
        let set: ProtocolSet = [Protocol::Do53, Protocol::DohFips].into_iter().collect();
        assert!(set.contains(Protocol::Do53));
        assert!(!set.contains(Protocol::DoH));
        assert_eq!(set.to_string(), "do53+doh-fips");
    }
}
