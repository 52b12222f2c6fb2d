//! Byte-level reading and writing of DNS messages (RFC 1035 §4.1, RFC 6891).
//!
//! Forwarding needs the ID, the flags, the question, the EDNS payload size and the TTLs, not a
//! full object tree, so these helpers read them straight from `&[u8]` without allocating. Every
//! read is bounds-checked: any byte sequence a peer sends yields a value or a [`WireError`].

use crate::error::WireError;

pub const HEADER_LEN: usize = 12;
/// The largest DNS message: its TCP length prefix is 16 bits.
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// The UDP payload size assumed for a query without EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;
/// The EDNS payload size dohgate advertises in answers it builds itself (DNS flag day 2020).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

pub const FLAG_QR: u16 = 0x8000;
pub const FLAG_AA: u16 = 0x0400;
pub const FLAG_TC: u16 = 0x0200;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_RA: u16 = 0x0080;
pub const FLAG_CD: u16 = 0x0010;
/// The DO bit in the OPT record's TTL field (RFC 3225).
pub const EDNS_FLAG_DO: u16 = 0x8000;

/// Response codes dohgate sets itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// A label for an RCODE in metrics and logs (bounded: unknown codes share one label).
pub fn rcode_name(rcode: u16) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        9 => "NOTAUTH",
        16 => "BADVERS",
        23 => "BADCOOKIE",
        _ => "OTHER",
    }
}

/// The big-endian 16-bit value at `at`.
#[inline]
pub fn u16_at(msg: &[u8], at: usize) -> Result<u16, WireError> {
    match msg.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

/// The big-endian 32-bit value at `at`.
#[inline]
pub fn u32_at(msg: &[u8], at: usize) -> Result<u32, WireError> {
    match msg.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(WireError::Truncated),
    }
}

/// The message ID, if the message has a header.
#[inline]
pub fn id(msg: &[u8]) -> Option<u16> {
    u16_at(msg, 0).ok()
}

/// Overwrites the message ID. Does nothing to a message shorter than a header.
#[inline]
pub fn set_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// The 16 flag bits of the header (QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE).
#[inline]
pub fn flags(msg: &[u8]) -> u16 {
    u16_at(msg, 2).unwrap_or(0)
}

/// The header RCODE (the low 4 bits; EDNS extended bits are not included).
#[inline]
pub fn rcode(msg: &[u8]) -> u16 {
    flags(msg) & 0x000f
}

#[inline]
pub fn is_truncated(msg: &[u8]) -> bool {
    flags(msg) & FLAG_TC != 0
}

/// QDCOUNT, ANCOUNT, NSCOUNT and ARCOUNT.
#[inline]
pub fn counts(msg: &[u8]) -> [u16; 4] {
    [
        u16_at(msg, 4).unwrap_or(0),
        u16_at(msg, 6).unwrap_or(0),
        u16_at(msg, 8).unwrap_or(0),
        u16_at(msg, 10).unwrap_or(0),
    ]
}

/// The question of a message, found by [`parse_query`] or [`question`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    /// Offset of the first byte after the question section's one entry.
    pub end: usize,
    /// Length of the owner name in wire format (including the root label).
    pub name_len: usize,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// The question's name in wire format, as it stands in `msg`.
    pub fn name<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        &msg[HEADER_LEN..HEADER_LEN + self.name_len]
    }

    /// The whole question entry (name, type and class) as it stands in `msg`.
    pub fn bytes<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        &msg[HEADER_LEN..self.end]
    }
}

/// What a query's OPT record says (RFC 6891).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// What the gateway needs to know about a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub question: Question,
    pub edns: Option<Edns>,
}

impl Query {
    /// The largest answer this client accepts over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => (e.udp_size as usize).max(CLASSIC_UDP_SIZE),
            None => CLASSIC_UDP_SIZE,
        }
    }

    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
}

/// Reads an uncompressed name starting at `at`; returns its wire length.
///
/// The question of a query has nothing before it to point back to, so a compression pointer
/// there is malformed.
fn uncompressed_name_len(msg: &[u8], at: usize) -> Result<usize, WireError> {
    let mut pos = at;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)? as usize;
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return Err(WireError::BadName);
        }
        pos += 1 + len;
        if pos - at > 255 {
            return Err(WireError::BadName);
        }
    }
    if pos > msg.len() {
        return Err(WireError::Truncated);
    }
    if pos - at > 255 {
        return Err(WireError::BadName);
    }
    Ok(pos - at)
}

/// Skips a possibly compressed name starting at `at`; returns the offset after it.
pub fn skip_name(msg: &[u8], at: usize) -> Result<usize, WireError> {
    let mut pos = at;
    let mut total = 0usize;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(pos + 1);
                }
                pos += 1 + len;
                total += 1 + len;
                if total > 255 {
                    return Err(WireError::BadName);
                }
            }
            0xc0 => {
                if pos + 2 > msg.len() {
                    return Err(WireError::Truncated);
                }
                return Ok(pos + 2);
            }
            _ => return Err(WireError::BadName),
        }
    }
}

/// Reads the first question of a message (queries and answers alike).
pub fn question(msg: &[u8]) -> Result<Question, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if counts(msg)[0] == 0 {
        return Err(WireError::NoQuestion);
    }
    let name_len = uncompressed_name_len(msg, HEADER_LEN)?;
    let at = HEADER_LEN + name_len;
    let qtype = u16_at(msg, at)?;
    let qclass = u16_at(msg, at + 2)?;
    Ok(Question {
        end: at + 4,
        name_len,
        qtype,
        qclass,
    })
}

/// One resource record's position in a message.
#[derive(Clone, Copy, Debug)]
pub struct Record {
    /// Offset of the owner name.
    pub start: usize,
    pub rtype: u16,
    /// Offset of the TTL field.
    pub ttl_at: usize,
    pub rdata_at: usize,
    /// Offset of the first byte after the record.
    pub end: usize,
}

/// Reads the resource record starting at `at` (its owner name possibly compressed).
pub fn read_record(msg: &[u8], at: usize) -> Result<Record, WireError> {
    let fixed = skip_name(msg, at)?;
    let rtype = u16_at(msg, fixed)?;
    let rdlen = u16_at(msg, fixed + 8)? as usize;
    let rdata_at = fixed + 10;
    let end = rdata_at + rdlen;
    if end > msg.len() {
        return Err(WireError::Truncated);
    }
    Ok(Record {
        start: at,
        rtype,
        ttl_at: fixed + 4,
        rdata_at,
        end,
    })
}

/// Walks every record after the question section, calling `f(section, record)`;
/// section is 1 (answer), 2 (authority) or 3 (additional).
fn for_each_record(
    msg: &[u8],
    after_question: usize,
    mut f: impl FnMut(usize, &Record),
) -> Result<usize, WireError> {
    let c = counts(msg);
    let mut pos = after_question;
    for (section, count) in [(1, c[1]), (2, c[2]), (3, c[3])] {
        for _ in 0..count {
            let rec = read_record(msg, pos)?;
            f(section, &rec);
            pos = rec.end;
        }
    }
    Ok(pos)
}

/// Checks that a message is a query dohgate can forward and reads what it needs of it.
///
/// Errors map to the wire as [`WireError::rcode`] says: FORMERR for malformed queries,
/// NOTIMP for opcodes other than QUERY; a message too short for a header cannot be answered.
pub fn parse_query(msg: &[u8]) -> Result<Query, WireError> {
    if msg.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let flags = flags(msg);
    if flags & FLAG_QR != 0 {
        return Err(WireError::NotAQuery);
    }
    let c = counts(msg);
    if c[0] != 1 {
        return Err(WireError::QuestionCount(c[0]));
    }
    let opcode = (flags >> 11) & 0x0f;
    if opcode != 0 {
        return Err(WireError::Opcode(opcode as u8));
    }
    let question = question(msg)?;
    let mut edns = None;
    let mut opt_count = 0;
    let end = for_each_record(msg, question.end, |section, rec| {
        if section == 3 && rec.rtype == TYPE_OPT {
            opt_count += 1;
            let udp_size = u16_at(msg, rec.ttl_at - 2).unwrap_or(512);
            let ttl = u32_at(msg, rec.ttl_at).unwrap_or(0);
            edns = Some(Edns {
                udp_size,
                version: ((ttl >> 16) & 0xff) as u8,
                dnssec_ok: ttl as u16 & EDNS_FLAG_DO != 0,
            });
        }
    })?;
    if opt_count > 1 {
        return Err(WireError::BadOpt);
    }
    if end != msg.len() {
        return Err(WireError::TrailingBytes);
    }
    Ok(Query {
        id: u16_at(msg, 0)?,
        flags,
        question,
        edns,
    })
}

/// True if `answer`'s question is `query_question` (the name compared case-insensitively, as
/// an upstream may change the case of a 0x20-randomised name).
pub fn same_question(query: &[u8], q: &Question, answer: &[u8]) -> bool {
    let Ok(aq) = question(answer) else {
        return false;
    };
    aq.qtype == q.qtype
        && aq.qclass == q.qclass
        && aq.name(answer).eq_ignore_ascii_case(q.name(query))
}

/// The UDP payload size a response's OPT record advertises (its sender's limit), or `None`
/// for a response without EDNS or one that does not parse.
pub fn response_udp_size(msg: &[u8]) -> Option<u16> {
    let q = question(msg).ok()?;
    let mut size = None;
    for_each_record(msg, q.end, |section, rec| {
        if section == 3 && rec.rtype == TYPE_OPT {
            size = u16_at(msg, rec.ttl_at - 2).ok();
        }
    })
    .ok()?;
    size
}

/// The smallest TTL in the answer, or for an answer with no answer records, in the authority
/// section (RFC 8484 §5.1, RFC 2308 §5). The OPT pseudo-record does not count.
pub fn min_ttl(msg: &[u8]) -> Option<u32> {
    let q = question(msg).ok()?;
    let mut min_answer: Option<u32> = None;
    let mut min_authority: Option<u32> = None;
    for_each_record(msg, q.end, |section, rec| {
        if rec.rtype == TYPE_OPT {
            return;
        }
        let mut ttl = u32_at(msg, rec.ttl_at).unwrap_or(0);
        if section == 2 && rec.rtype == TYPE_SOA && rec.end >= rec.rdata_at + 22 {
            // RFC 2308 §5: a negative answer lives for min(SOA TTL, SOA MINIMUM).
            if let Ok(minimum) = u32_at(msg, rec.end - 4) {
                ttl = ttl.min(minimum);
            }
        }
        let slot = match section {
            1 => &mut min_answer,
            2 => &mut min_authority,
            _ => return,
        };
        *slot = Some(slot.map_or(ttl, |m| m.min(ttl)));
    })
    .ok()?;
    min_answer.or(min_authority)
}

/// Builds an answer carrying only a header, the query's question (if it could be read) and an
/// OPT record if the query had one: the shape of FORMERR, SERVFAIL, REFUSED and NOTIMP answers.
///
/// Returns `None` for a message too short to carry an ID: such a datagram cannot be answered.
pub fn error_response(query: &[u8], rcode: Rcode) -> Option<Vec<u8>> {
    let id = id(query)?;
    let qflags = flags(query);
    let q = question(query).ok().filter(|_| counts(query)[0] == 1);
    let edns = parse_query(query).ok().and_then(|q| q.edns);
    let mut out = Vec::with_capacity(q.map_or(HEADER_LEN, |q| q.end) + 11);
    out.extend_from_slice(&id.to_be_bytes());
    // QR, the opcode and RD copied, RA set (we recurse on the client's behalf), CD copied.
    let flags = FLAG_QR | (qflags & 0x7800) | (qflags & FLAG_RD) | FLAG_RA | (qflags & FLAG_CD);
    out.extend_from_slice(&(flags | rcode as u16).to_be_bytes());
    out.extend_from_slice(&[0, u8::from(q.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some(q) = q {
        out.extend_from_slice(q.bytes(query));
    }
    if let Some(e) = edns {
        push_opt(&mut out, 0, e.dnssec_ok);
    }
    Some(out)
}

/// The answer to a query whose EDNS version dohgate does not speak (RFC 6891 §6.1.3): BADVERS,
/// extended RCODE 16, which is 1 in the OPT record's upper RCODE bits.
pub fn badvers_response(query: &[u8]) -> Option<Vec<u8>> {
    let mut out = error_response(query, Rcode::NoError)?;
    if counts(&out)[3] == 1 {
        // The OPT record was appended last: its TTL's first byte is the extended RCODE.
        let ttl_at = out.len() - 6;
        out[ttl_at] = 1;
    }
    Some(out)
}

/// Appends an OPT record advertising [`ADVERTISED_UDP_SIZE`] and bumps ARCOUNT.
pub fn push_opt(out: &mut Vec<u8>, ext_rcode: u8, dnssec_ok: bool) {
    out.push(0); // root owner name
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&ADVERTISED_UDP_SIZE.to_be_bytes());
    out.push(ext_rcode);
    out.push(0); // version
    out.extend_from_slice(&(if dnssec_ok { EDNS_FLAG_DO } else { 0 }).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // no options
    let arcount = u16_at(out, 10).unwrap_or(0).saturating_add(1);
    out[10..12].copy_from_slice(&arcount.to_be_bytes());
}

/// Cuts an answer down to fit `limit` bytes for a UDP client: header, question and OPT record,
/// with TC set, so the client retries over TCP (RFC 1035 §4.2.1, RFC 6891 §7).
///
/// An answer that already fits is returned unchanged.
pub fn truncate_for_udp(answer: Vec<u8>, limit: usize) -> Vec<u8> {
    if answer.len() <= limit {
        return answer;
    }
    let Ok(q) = question(&answer) else {
        // Not even a question to keep: a bare header with TC.
        let mut out = answer[..HEADER_LEN.min(answer.len())].to_vec();
        if out.len() == HEADER_LEN {
            out[2] |= (FLAG_TC >> 8) as u8;
            out[4..12].fill(0);
        }
        return out;
    };
    let mut opt: Option<(usize, usize)> = None;
    let _ = for_each_record(&answer, q.end, |section, rec| {
        if section == 3 && rec.rtype == TYPE_OPT {
            opt = Some((rec.start, rec.end));
        }
    });
    let mut out = Vec::with_capacity(q.end + 11);
    out.extend_from_slice(&answer[..q.end]);
    out[2] |= (FLAG_TC >> 8) as u8;
    out[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    if let Some((start, end)) = opt
        && out.len() + (end - start) <= limit
    {
        out.extend_from_slice(&answer[start..end]);
        out[10..12].copy_from_slice(&1u16.to_be_bytes());
    }
    out
}

/// Lower-cases a wire-format name into `buf`, returning the filled part. Names longer than
/// 255 bytes are cut, which never happens for a name that passed [`question`].
pub fn lowercase_name<'b>(name: &[u8], buf: &'b mut [u8; 255]) -> &'b [u8] {
    let n = name.len().min(255);
    for (d, s) in buf[..n].iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..n]
}

/// Converts a presentation-format name (`www.Example.com`, trailing dot optional, `.` for the
/// root) to lower-case wire format.
pub fn name_to_wire(name: &str) -> Result<Vec<u8>, WireError> {
    encode_name(name, true)
}

fn encode_name(name: &str, lowercase: bool) -> Result<Vec<u8>, WireError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let mut out = Vec::with_capacity(trimmed.len() + 2);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(WireError::BadName);
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
            {
                return Err(WireError::BadName);
            }
            out.push(label.len() as u8);
            if lowercase {
                out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            } else {
                out.extend_from_slice(label.as_bytes());
            }
        }
    }
    out.push(0);
    if out.len() > 255 {
        return Err(WireError::BadName);
    }
    Ok(out)
}

/// Converts a wire-format name to presentation format, lower-cased, with a trailing dot.
/// Bytes outside letters, digits, `-` and `_` are escaped as `\DDD`.
pub fn name_to_string(wire: &[u8]) -> String {
    let mut out = String::with_capacity(wire.len() + 1);
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 || len & 0xc0 != 0 {
            break;
        }
        let label = wire.get(pos + 1..pos + 1 + len as usize).unwrap_or(&[]);
        for &b in label {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*' {
                out.push(b.to_ascii_lowercase() as char);
            } else {
                out.push_str(&format!("\\{b:03}"));
            }
        }
        out.push('.');
        pos += 1 + len as usize;
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// Builds a query for `name` (its case kept) and `qtype` with RD set: for health checks, tests
/// and tools.
pub fn build_query(
    id: u16,
    name: &str,
    qtype: u16,
    edns_size: Option<u16>,
) -> Result<Vec<u8>, WireError> {
    let wire = encode_name(name, false)?;
    let mut out = Vec::with_capacity(HEADER_LEN + wire.len() + 4 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&wire);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(size) = edns_size {
        push_opt(&mut out, 0, false);
        let size_at = out.len() - 8;
        out[size_at..size_at + 2].copy_from_slice(&size.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        build_query(0x1234, name, TYPE_A, None).expect("valid name")
    }

    #[test]
    fn parses_a_plain_query() {
        let q = query("www.Example.com");
        let p = parse_query(&q).expect("parses");
        assert_eq!(p.id, 0x1234);
        assert_eq!(p.question.qtype, TYPE_A);
        assert_eq!(p.question.name(&q), b"\x03www\x07Example\x03com\x00");
        assert_eq!(p.edns, None);
        assert_eq!(p.udp_limit(), 512);
    }

    #[test]
    fn reads_edns_size_and_rejects_two_opts() {
        let mut q = build_query(1, "a.test", TYPE_A, Some(4096)).expect("valid");
        let p = parse_query(&q).expect("parses");
        assert_eq!(p.udp_limit(), 4096);
        push_opt(&mut q, 0, false);
        assert_eq!(parse_query(&q), Err(WireError::BadOpt));
    }

    #[test]
    fn reads_the_udp_size_a_response_advertises() {
        let mut r = build_query(1, "a.test", TYPE_A, Some(1232)).expect("valid");
        r[2] |= 0x80 | 0x02; // QR, TC
        assert_eq!(response_udp_size(&r), Some(1232));
        let mut plain = build_query(1, "a.test", TYPE_A, None).expect("valid");
        plain[2] |= 0x80;
        assert_eq!(response_udp_size(&plain), None);
        assert_eq!(response_udp_size(&[0; 5]), None);
    }

    #[test]
    fn rejects_malformed_queries() {
        assert_eq!(parse_query(&[0; 5]), Err(WireError::Truncated));
        let mut q = query("a.test");
        q[5] = 2; // QDCOUNT 2
        assert_eq!(parse_query(&q), Err(WireError::QuestionCount(2)));
        let mut q = query("a.test");
        q[12] = 0xc0; // pointer in the question
        assert_eq!(parse_query(&q), Err(WireError::BadName));
        let mut q = query("a.test");
        q.push(0);
        assert_eq!(parse_query(&q), Err(WireError::TrailingBytes));
        let q = query("a.test");
        assert_eq!(parse_query(&q[..q.len() - 1]), Err(WireError::Truncated));
        let mut q = query("a.test");
        q[2] |= 0x80;
        assert_eq!(parse_query(&q), Err(WireError::NotAQuery));
        let mut q = query("a.test");
        q[2] |= 2 << 3; // opcode STATUS
        assert_eq!(parse_query(&q), Err(WireError::Opcode(2)));
    }

    #[test]
    fn error_response_keeps_id_question_and_edns() {
        let q = build_query(0xbeef, "X.test", TYPE_A, Some(1232)).expect("valid");
        let r = error_response(&q, Rcode::ServFail).expect("has header");
        assert_eq!(id(&r), Some(0xbeef));
        assert_eq!(rcode(&r), 2);
        assert_ne!(flags(&r) & FLAG_QR, 0);
        let rq = question(&r).expect("question kept");
        assert_eq!(rq.name(&r), b"\x01X\x04test\x00");
        assert_eq!(counts(&r), [1, 0, 0, 1]);
        assert_eq!(error_response(&[1], Rcode::FormErr), None);
    }

    #[test]
    fn truncation_keeps_question_and_sets_tc() {
        let q = build_query(7, "big.test", 16, Some(4096)).expect("valid");
        let mut big = error_response(&q, Rcode::NoError).expect("answer");
        // Remove the OPT (11 bytes), add one 600-byte TXT answer, re-add the OPT.
        big.truncate(big.len() - 11);
        big[10..12].copy_from_slice(&0u16.to_be_bytes());
        big.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0x02, 0x58]);
        big.extend_from_slice(&[b'x'; 600]);
        big[6..8].copy_from_slice(&1u16.to_be_bytes());
        push_opt(&mut big, 0, false);
        assert_eq!(min_ttl(&big), Some(60));
        let small = truncate_for_udp(big.clone(), 512);
        assert!(small.len() <= 512);
        assert!(is_truncated(&small));
        assert_eq!(counts(&small), [1, 0, 0, 1]);
        assert_eq!(truncate_for_udp(big.clone(), 4096), big);
    }

    #[test]
    fn names_convert_both_ways() {
        assert_eq!(name_to_wire(".").expect("root"), vec![0]);
        assert_eq!(
            name_to_wire("Corp.Test.").expect("ok"),
            b"\x04corp\x04test\x00"
        );
        assert!(name_to_wire("a..b").is_err());
        assert!(name_to_wire(&"a".repeat(64)).is_err());
        assert_eq!(name_to_string(b"\x04corp\x04TEST\x00"), "corp.test.");
        assert_eq!(name_to_string(b"\x00"), ".");
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every prefix and many byte flips of a real query.
        let base = build_query(9, "fuzz.example.test", TYPE_A, Some(1232)).expect("valid");
        let mut seed = 0x2545_f491_u32;
        for len in 0..=base.len() {
            let _ = parse_query(&base[..len]);
            let _ = error_response(&base[..len], Rcode::FormErr);
            let _ = truncate_for_udp(base[..len].to_vec(), 12);
            let _ = min_ttl(&base[..len]);
        }
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut m = base.clone();
            let at = seed as usize % m.len();
            m[at] = (seed >> 8) as u8;
            let _ = parse_query(&m);
            let _ = error_response(&m, Rcode::FormErr);
            let _ = truncate_for_udp(m.clone(), 20);
            let _ = min_ttl(&m);
        }
    }
}
