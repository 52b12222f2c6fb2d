//! Local zones (Route 53's private hosted zones): RFC 1035 master files that dohgate answers
//! itself, authoritatively, instead of forwarding.
//!
//! Loading uses hickory-proto's zone-file parser once; every record is then kept as
//! uncompressed wire bytes per owner name and type, so answering a query is copying bytes, not
//! re-encoding records on the hot path.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use hickory_proto::rr::{DNSClass, Name, RecordSet, RrKey};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::serialize::txt::Parser;

use crate::error::ConfigError;
use crate::wire::{self, FLAG_AA, FLAG_CD, FLAG_QR, FLAG_RA, FLAG_RD, HEADER_LEN, Query, Rcode};

/// The configuration key zone-file errors are reported under.
const KEY: &str = "zone.file";
/// How many CNAMEs inside the zone an answer follows before it stops (as BIND does, roughly).
const MAX_CNAME_HOPS: usize = 8;
const TYPE_DNAME: u16 = 39;
const TYPE_IXFR: u16 = 251;
const TYPE_AXFR: u16 = 252;
const TYPE_ANY: u16 = 255;
const CLASS_ANY: u16 = 255;

/// A zone loaded from a master file and answered locally, authoritatively.
pub struct LocalZone {
    /// The apex in presentation format, lower-case, with a trailing dot.
    origin: String,
    /// The apex in lower-case wire format.
    apex: Vec<u8>,
    /// Every name that exists, lower-case wire format, empty non-terminals included (with no
    /// records), so "does the name exist" is one lookup.
    nodes: HashMap<Vec<u8>, Node>,
    /// The SOA record with its TTL lowered to the negative-caching TTL (RFC 2308 §5), for the
    /// authority section of NXDOMAIN and NODATA answers.
    negative_soa: Vec<u8>,
    records: usize,
}

impl fmt::Debug for LocalZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalZone")
            .field("origin", &self.origin)
            .field("names", &self.nodes.len())
            .field("records", &self.records)
            .finish()
    }
}

/// The records of one owner name.
#[derive(Debug, Default)]
struct Node {
    sets: Vec<RrSet>,
    /// The CNAME target, lower-case wire format, if the name is an alias.
    cname: Option<Vec<u8>>,
}

impl Node {
    fn set(&self, rtype: u16) -> Option<&RrSet> {
        self.sets.iter().find(|s| s.rtype == rtype)
    }
}

/// The records of one owner name and type, each encoded as owner, type, class, TTL, RDLENGTH
/// and RDATA without compression, one after the other.
#[derive(Debug)]
struct RrSet {
    rtype: u16,
    wire: Vec<u8>,
    /// Where each record starts in `wire`.
    starts: Vec<usize>,
}

impl RrSet {
    /// Appends the records, under `owner` instead of their own name when given (wildcard
    /// synthesis, RFC 4592 §3.4.1); `owner_len` is the length of their own name.
    fn push_to(&self, out: &mut Vec<u8>, owner: Option<&[u8]>, owner_len: usize) -> u16 {
        match owner {
            None => out.extend_from_slice(&self.wire),
            Some(owner) => {
                for (i, &start) in self.starts.iter().enumerate() {
                    let end = self.starts.get(i + 1).copied().unwrap_or(self.wire.len());
                    out.extend_from_slice(owner);
                    out.extend_from_slice(self.wire.get(start + owner_len..end).unwrap_or(&[]));
                }
            }
        }
        u16::try_from(self.starts.len()).unwrap_or(u16::MAX)
    }
}

/// What a lookup of one name found.
enum Found<'z> {
    /// The name exists (possibly as an empty non-terminal).
    Exact(&'z Node),
    /// The name does not exist but a wildcard covers it; the number is the length of the
    /// wildcard's own owner name.
    Wildcard(&'z Node, usize),
    Missing,
}

impl LocalZone {
    /// Loads the zone `origin` from master-file `text` read from `file` (named in errors).
    pub fn parse(origin: &str, text: &str, file: &Path) -> Result<LocalZone, ConfigError> {
        let at = |line: Option<usize>, message: String| {
            let mut e = ConfigError::new(KEY, message).at_line(line);
            e.file = Some(file.to_path_buf());
            e
        };
        let mut origin_name = Name::from_ascii(origin).map_err(|e| {
            ConfigError::new("zone.origin", format!("invalid zone name {origin:?}: {e}"))
        })?;
        origin_name.set_fqdn(true);
        let apex = wire_name(&origin_name).map_err(|e| {
            ConfigError::new("zone.origin", format!("invalid zone name {origin:?}: {e}"))
        })?;
        if apex == [0] {
            return Err(ConfigError::new(
                "zone.origin",
                "the root zone cannot be a local zone",
            ));
        }
        let origin = wire::name_to_string(&apex);

        // hickory would read an $INCLUDEd file itself, past the size limit and the file the
        // operator named; one file per zone keeps what is served where the config says.
        if let Some(line) = text.lines().position(|l| {
            l.get(..8)
                .is_some_and(|d| d.eq_ignore_ascii_case("$INCLUDE"))
        }) {
            return Err(at(
                Some(line + 1),
                "$INCLUDE is not supported in local zones".to_string(),
            ));
        }

        let built = match load(&origin_name, &apex, text) {
            Ok(b) => b,
            Err(message) => {
                // hickory's errors carry no line: find the first entry whose prefix of the
                // file fails to load, which is the entry at fault.
                let (line, message) = locate(&origin_name, &apex, text).unwrap_or((None, message));
                return Err(at(line, format!("zone {origin}: {message}")));
            }
        };
        let Some(soa) = built.soa else {
            return Err(at(
                None,
                format!("zone {origin} has no SOA record at its apex"),
            ));
        };
        let negative_soa = negative_soa(&soa, apex.len());
        Ok(LocalZone {
            origin,
            apex,
            nodes: built.nodes,
            negative_soa,
            records: built.records,
        })
    }

    /// The zone's apex in lower-case wire format.
    pub fn apex(&self) -> &[u8] {
        &self.apex
    }

    /// The zone's apex in presentation format, lower-case, with a trailing dot.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of records in the zone (the SOA included).
    pub fn len(&self) -> usize {
        self.records
    }

    /// Always false for a loaded zone: it has at least its SOA.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// True if `name` (wire format, any case, uncompressed) is at or below the apex.
    pub fn contains(&self, name: &[u8]) -> bool {
        let mut buf = [0u8; 255];
        let lname = wire::lowercase_name(name, &mut buf);
        wire_len(lname) == Some(lname.len()) && is_at_or_below(lname, &self.apex)
    }

    /// Builds the authoritative answer to `msg`, whose parsed form is `q`.
    ///
    /// The caller routes here only names at or below the apex; any other name, a class other
    /// than IN, and zone transfers get REFUSED. The answer is not cut to a UDP limit.
    pub fn answer(&self, msg: &[u8], q: &Query) -> Vec<u8> {
        let question = msg.get(HEADER_LEN..q.question.end);
        let name = question.and_then(|b| b.get(..q.question.name_len));
        let mut buf = [0u8; 255];
        let lname = name.map(|n| wire::lowercase_name(n, &mut buf));
        let (Some(question), Some(name), Some(lname)) = (question, name, lname) else {
            return respond(q, None, Rcode::FormErr, false, &Sections::default());
        };
        let qclass = q.question.qclass;
        let qtype = q.question.qtype;
        if wire_len(lname) != Some(lname.len())
            || !is_at_or_below(lname, &self.apex)
            || (qclass != wire::CLASS_IN && qclass != CLASS_ANY)
            || qtype == TYPE_AXFR
            || qtype == TYPE_IXFR
        {
            return respond(
                q,
                Some(question),
                Rcode::Refused,
                false,
                &Sections::default(),
            );
        }

        let mut s = Sections::default();
        let mut rcode = Rcode::NoError;
        let mut negative = false;
        // The name looked up at each hop as it should appear as a synthesised owner (the
        // question's own case first), and its lower-case form for lookups.
        let mut owner: Vec<u8> = name.to_vec();
        let mut key: Vec<u8> = lname.to_vec();
        let mut visited: Vec<Vec<u8>> = Vec::new();
        loop {
            let (node, synth) = match self.find(&key) {
                Found::Exact(n) => (n, None),
                Found::Wildcard(n, len) => (n, Some(len)),
                Found::Missing => {
                    rcode = Rcode::NxDomain;
                    negative = true;
                    break;
                }
            };
            let synth_owner = synth.map(|_| owner.as_slice());
            let own_len = synth.unwrap_or(key.len());
            if qtype == TYPE_ANY {
                for set in &node.sets {
                    s.add_answer(set, synth_owner, own_len);
                }
                negative = node.sets.is_empty();
                break;
            }
            if let Some(set) = node.set(qtype) {
                s.add_answer(set, synth_owner, own_len);
                break;
            }
            let (Some(target), Some(set)) = (&node.cname, node.set(wire::TYPE_CNAME)) else {
                negative = true;
                break;
            };
            s.add_answer(set, synth_owner, own_len);
            visited.push(key.clone());
            // A target outside the zone is the client's to resolve; a loop or a long chain
            // ends here with the CNAMEs so far.
            if !is_at_or_below(target, &self.apex)
                || visited.len() > MAX_CNAME_HOPS
                || visited.contains(target)
            {
                break;
            }
            owner.clone_from(target);
            key.clone_from(target);
        }
        if negative {
            s.authority.extend_from_slice(&self.negative_soa);
            s.nscount = 1;
        }
        respond(q, Some(question), rcode, true, &s)
    }

    /// Finds `name` (lower-case wire format, at or below the apex): the node itself, or the
    /// wildcard at its closest encloser (RFC 4592 §4.1).
    fn find(&self, name: &[u8]) -> Found<'_> {
        if let Some(n) = self.nodes.get(name) {
            return Found::Exact(n);
        }
        for at in label_starts(name).skip(1) {
            let Some(encloser) = name.get(at..) else {
                break;
            };
            if encloser.len() < self.apex.len() {
                break;
            }
            if !self.nodes.contains_key(encloser) {
                continue;
            }
            // The closest encloser exists: the name is covered by `*.<encloser>` or is
            // NXDOMAIN.
            let mut wild = Vec::with_capacity(encloser.len() + 2);
            wild.extend_from_slice(b"\x01*");
            wild.extend_from_slice(encloser);
            return match self.nodes.get(&wild) {
                Some(n) => Found::Wildcard(n, wild.len()),
                None => Found::Missing,
            };
        }
        Found::Missing
    }
}

/// The answer and authority sections being built.
#[derive(Default)]
struct Sections {
    answer: Vec<u8>,
    ancount: u16,
    authority: Vec<u8>,
    nscount: u16,
}

impl Sections {
    fn add_answer(&mut self, set: &RrSet, owner: Option<&[u8]>, owner_len: usize) {
        let n = set.push_to(&mut self.answer, owner, owner_len);
        self.ancount = self.ancount.saturating_add(n);
    }
}

/// Assembles header, question (as the client sent it), sections and OPT.
fn respond(q: &Query, question: Option<&[u8]>, rcode: Rcode, aa: bool, s: &Sections) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        HEADER_LEN + question.map_or(0, <[u8]>::len) + s.answer.len() + s.authority.len() + 11,
    );
    out.extend_from_slice(&q.id.to_be_bytes());
    let mut flags =
        FLAG_QR | (q.flags & 0x7800) | (q.flags & (FLAG_RD | FLAG_CD)) | FLAG_RA | rcode as u16;
    if aa {
        flags |= FLAG_AA;
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
    out.extend_from_slice(&s.ancount.to_be_bytes());
    out.extend_from_slice(&s.nscount.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    if let Some(question) = question {
        out.extend_from_slice(question);
    }
    out.extend_from_slice(&s.answer);
    out.extend_from_slice(&s.authority);
    if let Some(e) = q.edns {
        wire::push_opt(&mut out, 0, e.dnssec_ok);
    }
    out
}

/// The SOA record with its TTL set to min(TTL, MINIMUM) (RFC 2308 §5).
fn negative_soa(soa: &[u8], owner_len: usize) -> Vec<u8> {
    let mut out = soa.to_vec();
    let ttl_at = owner_len + 4;
    let ttl = soa.get(ttl_at..ttl_at + 4).and_then(|b| b.try_into().ok());
    let minimum = soa
        .len()
        .checked_sub(4)
        .and_then(|at| soa.get(at..))
        .and_then(|b| b.try_into().ok());
    if let (Some(ttl), Some(minimum)) = (ttl, minimum) {
        let ttl = u32::from_be_bytes(ttl).min(u32::from_be_bytes(minimum));
        out[ttl_at..ttl_at + 4].copy_from_slice(&ttl.to_be_bytes());
    }
    out
}

/// What loading a zone text yields before the check that it has an SOA.
struct Built {
    nodes: HashMap<Vec<u8>, Node>,
    soa: Option<Vec<u8>>,
    records: usize,
}

/// Parses `text` and checks and encodes its records.
fn load(origin: &Name, apex: &[u8], text: &str) -> Result<Built, String> {
    // No path: a relative $INCLUDE fails in the parser too.
    let (_, sets) = Parser::new(text, None, Some(origin.clone()))
        .parse()
        .map_err(|e| e.to_string())?;
    build(apex, &sets)
}

/// The line of the first entry of `text` at which loading fails, and that failure.
///
/// Loading only ever adds records, so once a prefix of the file (cut between entries) fails,
/// every longer one does: a binary search needs a handful of parses, and only on errors.
fn locate(origin: &Name, apex: &[u8], text: &str) -> Option<(Option<usize>, String)> {
    let ends = entry_ends(text);
    let fails = |cut: usize| {
        text.get(..cut)
            .is_none_or(|p| load(origin, apex, p).is_err())
    };
    let i = ends.partition_point(|&(cut, _)| !fails(cut));
    let &(cut, line) = ends.get(i)?;
    let message = load(origin, apex, text.get(..cut)?).err()?;
    Some((Some(line), message))
}

/// Byte offsets at which an entry of the master file ends (after its line feed, outside
/// parentheses and quotes), each with the line the entry began on. The scan follows what
/// hickory's lexer treats as comments, quotes and parentheses closely enough to place lines;
/// an odd entry it misjudges only makes the reported line less precise.
fn entry_ends(text: &str) -> Vec<(usize, usize)> {
    let mut ends = Vec::new();
    let (mut line, mut entry_line) = (1usize, 1usize);
    let (mut in_list, mut in_quote, mut in_comment, mut escaped) = (false, false, false, false);
    let mut token_start = true;
    for (i, b) in text.bytes().enumerate() {
        if in_comment {
            if b != b'\n' {
                continue;
            }
            in_comment = false;
        }
        if in_quote {
            if b == b'\n' {
                line += 1;
            }
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            token_start = false;
            continue;
        }
        match b {
            b'\n' => {
                line += 1;
                if !in_list {
                    ends.push((i + 1, entry_line));
                    entry_line = line;
                }
            }
            b';' => in_comment = true,
            b'(' if token_start && !in_list => in_list = true,
            b')' if in_list => in_list = false,
            b'"' if token_start && !in_list => in_quote = true,
            _ => {}
        }
        token_start = b.is_ascii_whitespace() || b == b'(' || b == b')';
    }
    if ends.last().is_none_or(|&(cut, _)| cut < text.len()) {
        ends.push((text.len(), entry_line));
    }
    ends
}

/// Checks and encodes the parsed records; the SOA count is checked by the caller, as it is the
/// one check a prefix of the file may fail and the whole file pass.
fn build(apex: &[u8], sets: &BTreeMap<RrKey, RecordSet>) -> Result<Built, String> {
    let mut nodes: HashMap<Vec<u8>, Node> = HashMap::new();
    let mut soa = None;
    let mut records = 0usize;
    for set in sets.values() {
        for record in set.records_without_rrsigs() {
            let rtype = u16::from(record.record_type());
            let what = format!("{} {}", record.name, record.record_type());
            if record.dns_class != DNSClass::IN {
                return Err(format!(
                    "{what}: class {} is not supported, local zones are class IN",
                    record.dns_class
                ));
            }
            let mut bytes = Vec::new();
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_name_encoding(NameEncoding::Uncompressed);
            record
                .emit(&mut encoder)
                .map_err(|e| format!("{what}: cannot encode: {e}"))?;
            let owner_len = wire_len(&bytes).ok_or_else(|| format!("{what}: bad owner name"))?;
            bytes[..owner_len].make_ascii_lowercase();
            let owner = &bytes[..owner_len];
            if !is_at_or_below(owner, apex) {
                return Err(format!(
                    "{what}: {} is outside the zone {}",
                    record.name,
                    wire::name_to_string(apex)
                ));
            }
            let at_apex = owner == apex;
            match rtype {
                wire::TYPE_SOA if !at_apex => {
                    return Err(format!("{what}: the SOA must be at the zone's apex"));
                }
                wire::TYPE_SOA => soa = Some(bytes.clone()),
                wire::TYPE_NS if !at_apex => {
                    return Err(format!(
                        "{what}: delegation is not supported in local zones (NS records below the apex)"
                    ));
                }
                TYPE_DNAME => {
                    return Err(format!("{what}: DNAME is not supported in local zones"));
                }
                _ => {}
            }
            let owner = owner.to_vec();
            let node = nodes.entry(owner.clone()).or_default();
            if rtype == wire::TYPE_CNAME {
                let target = bytes.get(owner_len + 10..).unwrap_or(&[]);
                node.cname = Some(target.to_ascii_lowercase());
            }
            let idx = match node.sets.iter().position(|s| s.rtype == rtype) {
                Some(i) => i,
                None => {
                    node.sets.push(RrSet {
                        rtype,
                        wire: Vec::new(),
                        starts: Vec::new(),
                    });
                    node.sets.len() - 1
                }
            };
            let rrset = &mut node.sets[idx];
            rrset.starts.push(rrset.wire.len());
            rrset.wire.extend_from_slice(&bytes);
            records += 1;
            if node.cname.is_some() && node.sets.len() > 1 {
                return Err(format!(
                    "{}: a CNAME cannot share its name with other records (RFC 1034 §3.6.2)",
                    record.name
                ));
            }
        }
    }
    // Empty non-terminals: every name between an owner and the apex exists (RFC 4592 §2.2.2).
    let owners: Vec<Vec<u8>> = nodes.keys().cloned().collect();
    for owner in owners {
        for at in label_starts(&owner).skip(1) {
            let Some(parent) = owner.get(at..) else {
                break;
            };
            if parent.len() <= apex.len() {
                break;
            }
            nodes.entry(parent.to_vec()).or_default();
        }
    }
    Ok(Built {
        nodes,
        soa,
        records,
    })
}

/// A hickory name in lower-case, uncompressed wire format.
fn wire_name(name: &Name) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = BinEncoder::new(&mut out);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    name.emit(&mut encoder).map_err(|e| e.to_string())?;
    out.make_ascii_lowercase();
    Ok(out)
}

/// The length of the uncompressed wire name at the start of `b`, if it is one.
fn wire_len(b: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    loop {
        let len = *b.get(pos)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
        if pos > 255 {
            return None;
        }
        if len == 0 {
            return Some(pos);
        }
    }
}

/// Offsets of each label of a wire name, from its first label down to the root label.
fn label_starts(name: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = Some(0usize);
    std::iter::from_fn(move || {
        let at = pos?;
        let len = *name.get(at)? as usize;
        pos = (len != 0 && len & 0xc0 == 0).then_some(at + 1 + len);
        Some(at)
    })
}

/// True if lower-case wire name `name` is `apex` or below it.
fn is_at_or_below(name: &[u8], apex: &[u8]) -> bool {
    let Some(at) = name.len().checked_sub(apex.len()) else {
        return false;
    };
    name.ends_with(apex) && label_starts(name).any(|s| s == at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};
    use std::path::PathBuf;

    const ZONE: &str = "\
$ORIGIN corp.test.
$TTL 3600
@       IN SOA ns1 hostmaster (
                2024010101 ; serial
                7200       ; refresh
                900        ; retry
                1209600    ; expire
                300 )      ; minimum
        IN NS ns1
        IN MX 10 mail
ns1     IN A 10.0.0.53
www 600 IN A 10.0.0.10
www 600 IN A 10.0.0.11
www     IN AAAA fd00::10
mail    IN A 10.0.0.25
txt     IN TXT \"hello world\" \"second\"
alias   IN CNAME www
alias2  IN CNAME alias.corp.test.
ext     IN CNAME example.com.
loop1   IN CNAME loop2
loop2   IN CNAME loop1
dangle  IN CNAME nothere
a.b     IN A 10.0.0.1
*.wild  IN A 10.0.0.99
*.wild  IN TXT \"wild\"
";

    fn zone() -> LocalZone {
        LocalZone::parse("Corp.Test", ZONE, Path::new("corp.zone")).expect("zone loads")
    }

    fn ask(z: &LocalZone, name: &str, qtype: u16) -> (Vec<u8>, Vec<u8>) {
        let q = wire::build_query(0xa1b2, name, qtype, Some(1232)).expect("valid");
        let p = wire::parse_query(&q).expect("parses");
        (z.answer(&q, &p), q)
    }

    /// Checks what every answer must have, and parses it.
    fn check(z: &LocalZone, name: &str, qtype: u16, rcode: u16, counts: [u16; 4]) -> Message {
        let (r, q) = ask(z, name, qtype);
        assert_eq!(wire::id(&r), Some(0xa1b2));
        assert_eq!(wire::rcode(&r), rcode, "{name}");
        assert_eq!(wire::counts(&r), counts, "{name}");
        let f = wire::flags(&r);
        assert_ne!(f & FLAG_QR, 0);
        assert_ne!(f & FLAG_AA, 0);
        assert_ne!(f & FLAG_RD, 0);
        assert_ne!(f & FLAG_RA, 0);
        let pq = wire::parse_query(&q).expect("parses");
        assert_eq!(&r[HEADER_LEN..pq.question.end], pq.question.bytes(&q));
        Message::from_vec(&r).expect("hickory reads the answer")
    }

    fn names(m: &[hickory_proto::rr::Record]) -> Vec<String> {
        m.iter()
            .map(|r| format!("{} {}", r.name, r.record_type()))
            .collect()
    }

    fn assert_negative_soa(m: &Message) {
        assert_eq!(m.authorities.len(), 1);
        let soa = &m.authorities[0];
        assert_eq!(soa.record_type(), RecordType::SOA);
        assert_eq!(soa.name.to_string(), "corp.test.");
        assert_eq!(soa.ttl, 300, "min(SOA TTL 3600, MINIMUM 300)");
    }

    #[test]
    fn loads_the_zone() {
        let z = zone();
        assert_eq!(z.origin(), "corp.test.");
        assert_eq!(z.apex(), b"\x04corp\x04test\x00");
        assert_eq!(z.len(), 18);
        assert!(!z.is_empty());
        assert!(z.contains(b"\x03WWW\x04corp\x04test\x00"));
        assert!(!z.contains(b"\x04test\x00"));
        assert!(!z.contains(b"\x02xcorp\x04test\x00"));
    }

    #[test]
    fn answers_records_of_the_type_asked() {
        let z = zone();
        // 0x20 case: the question comes back exactly as sent.
        let m = check(&z, "wWw.CoRp.tEsT", 1, 0, [1, 2, 0, 1]);
        let addrs: Vec<String> = m
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                other => panic!("not an A: {other:?}"),
            })
            .collect();
        assert_eq!(addrs, ["10.0.0.10", "10.0.0.11"]);
        assert!(m.answers.iter().all(|r| r.ttl == 600));
        assert_eq!(m.answers[0].name.to_string(), "www.corp.test.");
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);

        let m = check(&z, "www.corp.test", 28, 0, [1, 1, 0, 1]);
        assert!(matches!(&m.answers[0].data, RData::AAAA(a) if a.0.to_string() == "fd00::10"));
        assert_eq!(m.answers[0].ttl, 3600);

        let m = check(&z, "corp.test", 15, 0, [1, 1, 0, 1]);
        match &m.answers[0].data {
            RData::MX(mx) => {
                assert_eq!(mx.preference, 10);
                assert_eq!(mx.exchange.to_string(), "mail.corp.test.");
            }
            other => panic!("not an MX: {other:?}"),
        }

        let m = check(&z, "txt.corp.test", 16, 0, [1, 1, 0, 1]);
        match &m.answers[0].data {
            RData::TXT(t) => {
                let parts: Vec<&[u8]> = t.txt_data.iter().map(|b| &b[..]).collect();
                assert_eq!(parts, [&b"hello world"[..], b"second"]);
            }
            other => panic!("not a TXT: {other:?}"),
        }

        let m = check(&z, "corp.test", 2, 0, [1, 1, 0, 1]);
        assert!(
            matches!(&m.answers[0].data, RData::NS(ns) if ns.0.to_string() == "ns1.corp.test.")
        );
        let m = check(&z, "corp.test", 6, 0, [1, 1, 0, 1]);
        assert_eq!(m.answers[0].ttl, 3600, "a positive SOA keeps its own TTL");
    }

    #[test]
    fn follows_cnames_inside_the_zone() {
        let z = zone();
        let m = check(&z, "alias2.corp.test", 1, 0, [1, 4, 0, 1]);
        assert_eq!(
            names(&m.answers),
            [
                "alias2.corp.test. CNAME",
                "alias.corp.test. CNAME",
                "www.corp.test. A",
                "www.corp.test. A"
            ]
        );
        // Asking for the CNAME itself does not follow it.
        let m = check(&z, "alias.corp.test", 5, 0, [1, 1, 0, 1]);
        assert!(
            matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_string() == "www.corp.test.")
        );
        // The target exists but not with that type: NODATA after the chain.
        let m = check(&z, "alias.corp.test", 16, 0, [1, 1, 1, 1]);
        assert_negative_soa(&m);
    }

    #[test]
    fn cname_out_of_zone_ends_the_chain() {
        let z = zone();
        let m = check(&z, "ext.corp.test", 1, 0, [1, 1, 0, 1]);
        assert!(matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_string() == "example.com."));
    }

    #[test]
    fn cname_loop_ends() {
        let z = zone();
        let m = check(&z, "loop1.corp.test", 1, 0, [1, 2, 0, 1]);
        assert_eq!(
            names(&m.answers),
            ["loop1.corp.test. CNAME", "loop2.corp.test. CNAME"]
        );
    }

    #[test]
    fn cname_to_a_missing_name_is_nxdomain() {
        // RFC 6604 §2.1: the RCODE is that of the last name in the chain.
        let z = zone();
        let m = check(&z, "dangle.corp.test", 1, 3, [1, 1, 1, 1]);
        assert_negative_soa(&m);
    }

    #[test]
    fn long_cname_chains_stop() {
        let mut text = String::from("@ 60 IN SOA ns h 1 2 3 4 5\n");
        for i in 0..20 {
            text.push_str(&format!("c{i} 60 IN CNAME c{}\n", i + 1));
        }
        text.push_str("c20 60 IN A 192.0.2.1\n");
        let z = LocalZone::parse("long.test", &text, Path::new("long.zone")).expect("loads");
        let (r, _) = ask(&z, "c0.long.test", 1);
        assert_eq!(wire::counts(&r)[1] as usize, MAX_CNAME_HOPS + 1);
        assert_eq!(wire::rcode(&r), 0);
    }

    #[test]
    fn nodata_and_nxdomain_carry_the_soa() {
        let z = zone();
        let m = check(&z, "www.corp.test", 16, 0, [1, 0, 1, 1]);
        assert_negative_soa(&m);
        let m = check(&z, "nope.corp.test", 1, 3, [1, 0, 1, 1]);
        assert_negative_soa(&m);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        let (r, _) = ask(&z, "nope.corp.test", 1);
        assert_eq!(wire::min_ttl(&r), Some(300));
        // Below an existing leaf: still NXDOMAIN.
        check(&z, "x.www.corp.test", 1, 3, [1, 0, 1, 1]);
    }

    #[test]
    fn empty_non_terminal_is_nodata() {
        let z = zone();
        let m = check(&z, "b.corp.test", 1, 0, [1, 0, 1, 1]);
        assert_negative_soa(&m);
        check(&z, "a.b.corp.test", 1, 0, [1, 1, 0, 1]);
        check(&z, "c.b.corp.test", 1, 3, [1, 0, 1, 1]);
    }

    #[test]
    fn any_returns_every_record_of_the_name() {
        let z = zone();
        let m = check(&z, "www.corp.test", TYPE_ANY, 0, [1, 3, 0, 1]);
        assert_eq!(
            names(&m.answers),
            [
                "www.corp.test. A",
                "www.corp.test. A",
                "www.corp.test. AAAA"
            ]
        );
        check(&z, "b.corp.test", TYPE_ANY, 0, [1, 0, 1, 1]);
    }

    #[test]
    fn wildcards_synthesise_the_query_name() {
        let z = zone();
        let m = check(&z, "Host.Wild.corp.test", 1, 0, [1, 1, 0, 1]);
        // The owner is the name asked for, in the case it was asked.
        assert_eq!(m.answers[0].name.to_string(), "Host.Wild.corp.test.");
        assert!(matches!(&m.answers[0].data, RData::A(a) if a.0.to_string() == "10.0.0.99"));
        check(&z, "deep.host.wild.corp.test", 16, 0, [1, 1, 0, 1]);
        let m = check(&z, "host.wild.corp.test", 28, 0, [1, 0, 1, 1]);
        assert_negative_soa(&m);
        // The wildcard's parent is an empty non-terminal; a name with no wildcard above it is
        // NXDOMAIN.
        check(&z, "wild.corp.test", 1, 0, [1, 0, 1, 1]);
        check(&z, "x.a.b.corp.test", 1, 3, [1, 0, 1, 1]);
        let m = check(&z, "h.wild.corp.test", TYPE_ANY, 0, [1, 2, 0, 1]);
        assert!(
            m.answers
                .iter()
                .all(|r| r.name.to_string() == "h.wild.corp.test.")
        );
    }

    #[test]
    fn header_flags_and_edns() {
        let z = zone();
        let mut q = wire::build_query(7, "www.corp.test", 1, None).expect("valid");
        q[2] &= !((FLAG_RD >> 8) as u8);
        q[3] |= FLAG_CD as u8;
        let p = wire::parse_query(&q).expect("parses");
        let r = z.answer(&q, &p);
        let f = wire::flags(&r);
        assert_eq!(f & FLAG_RD, 0);
        assert_ne!(f & FLAG_CD, 0);
        assert_eq!(wire::counts(&r), [1, 2, 0, 0], "no OPT without EDNS");
    }

    #[test]
    fn refuses_what_is_not_its_to_answer() {
        let z = zone();
        for (name, qtype) in [
            ("other.test", 1),
            ("xcorp.test", 1),
            ("corp.test", TYPE_AXFR),
        ] {
            let (r, _) = ask(&z, name, qtype);
            assert_eq!(wire::rcode(&r), Rcode::Refused as u16, "{name}");
            assert_eq!(wire::flags(&r) & FLAG_AA, 0);
            assert_eq!(wire::counts(&r), [1, 0, 0, 1]);
        }
        let mut q = wire::build_query(7, "www.corp.test", 1, None).expect("valid");
        let end = q.len();
        q[end - 1] = 3; // class CH
        let p = wire::parse_query(&q).expect("parses");
        assert_eq!(wire::rcode(&z.answer(&q, &p)), Rcode::Refused as u16);
    }

    fn parse_err(text: &str) -> ConfigError {
        LocalZone::parse("corp.test", text, Path::new("/etc/dohgate/corp.zone"))
            .expect_err("must not load")
    }

    const HEAD: &str = "$TTL 60\n@ IN SOA ns h (\n 1 2 3\n 4 5 )\n  IN NS ns\nns IN A 10.0.0.1\n";

    #[test]
    fn bad_record_names_file_and_line() {
        let e = parse_err(&format!(
            "{HEAD}; fine\nwww IN A 10.0.0.300\nok IN A 10.0.0.2\n"
        ));
        assert_eq!(e.file, Some(PathBuf::from("/etc/dohgate/corp.zone")));
        assert_eq!(e.line, Some(8));
        assert_eq!(e.key, "zone.file");
        assert!(
            e.to_string()
                .starts_with("/etc/dohgate/corp.zone:8: zone.file: "),
            "{e}"
        );
        // An unknown type, and an error inside a multi-line entry (reported where it starts).
        assert_eq!(parse_err(&format!("{HEAD}x IN BOGUS 1\n")).line, Some(7));
        let e = parse_err(&format!("{HEAD}t IN TXT (\n \"a\"\n ) )\n"));
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn zone_without_soa_is_an_error() {
        let e = parse_err("$TTL 60\n@ IN NS ns\nns IN A 10.0.0.1\n");
        assert!(e.message.contains("no SOA"), "{e}");
        assert_eq!(e.file, Some(PathBuf::from("/etc/dohgate/corp.zone")));
        let e = parse_err(&format!("{HEAD}@ IN SOA ns h 2 2 3 4 5\n"));
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse_err(&format!("{HEAD}sub IN SOA ns h 2 2 3 4 5\n"));
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn record_outside_origin_is_an_error() {
        let e = parse_err(&format!("{HEAD}www.example.com. IN A 10.0.0.9\n"));
        assert_eq!(e.line, Some(7));
        assert!(e.message.contains("outside the zone corp.test."), "{e}");
        let e = parse_err(&format!("{HEAD}$ORIGIN other.test.\nwww IN A 10.0.0.9\n"));
        assert_eq!(e.line, Some(8));
    }

    #[test]
    fn delegation_is_an_error() {
        let e = parse_err(&format!(
            "{HEAD}\nsub IN NS ns.elsewhere.test.\nz IN A 10.0.0.3\n"
        ));
        assert_eq!(e.line, Some(8));
        assert!(e.message.contains("delegation is not supported"), "{e}");
    }

    #[test]
    fn other_load_errors() {
        let e = parse_err(&format!("{HEAD}w IN A 10.0.0.1\nw IN CNAME ns\n"));
        assert_eq!(e.line, Some(8));
        assert!(e.message.contains("CNAME"), "{e}");
        let e = parse_err(&format!("{HEAD}$INCLUDE /etc/passwd\n"));
        assert_eq!(e.line, Some(7));
        let e = parse_err(&format!("{HEAD}w CH TXT \"x\"\n"));
        assert_eq!(e.line, Some(7));
        assert!(
            LocalZone::parse(".", HEAD, Path::new("root.zone")).is_err(),
            "the root is not a local zone"
        );
        assert!(LocalZone::parse("a..b", HEAD, Path::new("x.zone")).is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let z = zone();
        let names = [
            "www.corp.test",
            "alias2.corp.test",
            "h.wild.corp.test",
            "b.corp.test",
        ];
        let other = wire::build_query(1, "a.b.c.d.e.f.g.corp.test", 1, None).expect("valid");
        let other_q = wire::parse_query(&other).expect("parses");
        let mut seed = 0x2545_f491_u32;
        for (i, name) in names.iter().cycle().take(20_000).enumerate() {
            let base = wire::build_query(9, name, [1, 5, 16, 255][i % 4], Some(1232)).expect("ok");
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut m = base.clone();
            let at = seed as usize % m.len();
            m[at] = (seed >> 8) as u8;
            if let Ok(q) = wire::parse_query(&m) {
                let r = z.answer(&m, &q);
                assert!(wire::question(&r).is_ok());
            }
            // A parsed query paired with other bytes (a caller's mistake) must not panic.
            let _ = z.answer(&m[..at], &other_q);
            let _ = z.answer(&m, &other_q);
        }
    }
}
