//! Reading the names an answer redirects to (CNAME and DNAME targets), so a firewall that
//! inspects redirections can check each of them after forwarding.
//!
//! Answers come from upstream servers, so names may be compressed; the decompressor follows
//! only backward pointers and a bounded number of them, and any defect is an error so the
//! caller can fail closed.

use crate::error::WireError;
use crate::wire;

/// The DNAME record type (RFC 6672).
pub const TYPE_DNAME: u16 = 39;

/// More pointers than any 255-byte name can need (each pointer follows at least one label).
const MAX_POINTERS: usize = 128;

/// Reads a possibly compressed name at `at` into `out` (cleared first) as lower-case,
/// uncompressed wire format; returns the offset after the name where it stands in `msg`.
///
/// A pointer must point before the labels it follows (RFC 1035 §4.1.4 "prior occurrence"),
/// which rules out forward pointers and loops; a name longer than 255 bytes is [`WireError::BadName`].
pub fn read_name(msg: &[u8], at: usize, out: &mut Vec<u8>) -> Result<usize, WireError> {
    out.clear();
    let mut pos = at;
    // Where the labels being read began: a pointer must jump strictly before it, so the
    // sequence of jumps strictly decreases and must end.
    let mut run_start = at;
    let mut next = None;
    let mut pointers = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                out.push(0);
                return Ok(next.unwrap_or(pos + 1));
            }
            0x00 => {
                let label = msg
                    .get(pos + 1..pos + 1 + len as usize)
                    .ok_or(WireError::Truncated)?;
                // The label, its length byte and the root label still to come.
                if out.len() + 1 + label.len() + 1 > 255 {
                    return Err(WireError::BadName);
                }
                out.push(len);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                pos += 1 + label.len();
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(WireError::Truncated)?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                pointers += 1;
                if target >= run_start || target < wire::HEADER_LEN || pointers > MAX_POINTERS {
                    return Err(WireError::BadName);
                }
                next.get_or_insert(pos + 2);
                pos = target;
                run_start = target;
            }
            // 0x40 and 0x80: extended label types (RFC 6891 §5), never valid here.
            _ => return Err(WireError::BadName),
        }
    }
}

/// The names an answer redirects to, in order: each CNAME's target and each DNAME's target
/// (the DNAME target itself, not the name substituted into it: servers also send the
/// synthesised CNAME, whose target is that name), lower-case, uncompressed wire format.
///
/// Only the answer section is read; records of other types are skipped. An answer section that
/// cannot be read (truncated, bad names or pointers, rdata longer or shorter than its one name)
/// is an error, so the caller can fail closed.
pub fn answer_chain(answer: &[u8]) -> Result<Vec<Box<[u8]>>, WireError> {
    let question = wire::question(answer)?;
    let [qdcount, ancount, _, _] = wire::counts(answer);
    if qdcount != 1 {
        return Err(WireError::QuestionCount(qdcount));
    }
    let mut chain = Vec::new();
    let mut name = Vec::with_capacity(255);
    let mut pos = question.end;
    for _ in 0..ancount {
        let rec = wire::read_record(answer, pos)?;
        if rec.rtype == wire::TYPE_CNAME || rec.rtype == TYPE_DNAME {
            let end = read_name(answer, rec.rdata_at, &mut name)?;
            if end != rec.end {
                return Err(WireError::BadName);
            }
            chain.push(name.as_slice().into());
        }
        pos = rec.end;
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with the answer records appended as raw bytes.
    struct Answer(Vec<u8>);

    impl Answer {
        fn to(query: &str) -> Self {
            let q = wire::build_query(0x4242, query, wire::TYPE_A, None).expect("valid");
            let mut a = Answer(q);
            a.0[2] |= 0x80;
            a
        }

        /// Appends a record; returns the offset of its rdata.
        fn record(&mut self, owner: &[u8], rtype: u16, rdata: &[u8]) -> usize {
            let m = &mut self.0;
            m.extend_from_slice(owner);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
            m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            let at = m.len();
            m.extend_from_slice(rdata);
            let ancount = u16::from_be_bytes([m[6], m[7]]) + 1;
            m[6..8].copy_from_slice(&ancount.to_be_bytes());
            at
        }
    }

    fn ptr(to: usize) -> [u8; 2] {
        [0xc0 | (to >> 8) as u8, to as u8]
    }

    fn names(chain: &[Box<[u8]>]) -> Vec<String> {
        chain.iter().map(|n| wire::name_to_string(n)).collect()
    }

    /// www.Example.com CNAME cdn.example.com CNAME edge.net CNAME x1.cdn.example.com, then an A.
    fn three_cnames() -> Vec<u8> {
        let mut a = Answer::to("www.Example.com");
        // The question name starts at 12; "example.com" at 16.
        let cdn = a.record(
            &ptr(12),
            wire::TYPE_CNAME,
            &[&b"\x03CDN"[..], &ptr(16)].concat(),
        );
        let edge = a.record(&ptr(cdn), wire::TYPE_CNAME, b"\x04Edge\x03net\x00");
        // Two hops: x1 -> cdn's rdata -> the question's "example.com".
        let x1 = a.record(
            &ptr(edge),
            wire::TYPE_CNAME,
            &[&b"\x02x1"[..], &ptr(cdn)].concat(),
        );
        a.record(&ptr(x1), wire::TYPE_A, &[192, 0, 2, 1]);
        a.0
    }

    #[test]
    fn reads_a_compressed_cname_chain() {
        let chain = answer_chain(&three_cnames()).expect("well formed");
        assert_eq!(
            names(&chain),
            ["cdn.example.com.", "edge.net.", "x1.cdn.example.com."]
        );
        assert_eq!(&*chain[0], b"\x03cdn\x07example\x03com\x00");
    }

    #[test]
    fn reads_a_dname_and_its_synthesised_cname() {
        let mut a = Answer::to("a.old.example");
        // "old.example" starts at 14, "example" at 18.
        let new = a.record(&ptr(14), TYPE_DNAME, &[&b"\x03NEW"[..], &ptr(18)].concat());
        a.record(
            &ptr(12),
            wire::TYPE_CNAME,
            &[&b"\x01a"[..], &ptr(new)].concat(),
        );
        let chain = answer_chain(&a.0).expect("well formed");
        assert_eq!(names(&chain), ["new.example.", "a.new.example."]);
    }

    #[test]
    fn no_redirection_is_an_empty_chain() {
        let mut a = Answer::to("x.example");
        a.record(&ptr(12), wire::TYPE_A, &[192, 0, 2, 1]);
        assert_eq!(answer_chain(&a.0), Ok(Vec::new()));
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_errors() {
        // A pointer to itself.
        let mut a = Answer::to("x.example");
        let at = a.0.len() + 2 + 10;
        a.record(&ptr(12), wire::TYPE_CNAME, &ptr(at));
        assert_eq!(answer_chain(&a.0), Err(WireError::BadName));
        // A label, then a pointer back to that label: a two-step loop.
        let mut a = Answer::to("x.example");
        let at = a.0.len() + 2 + 10;
        a.record(
            &ptr(12),
            wire::TYPE_CNAME,
            &[&b"\x01a"[..], &ptr(at)].concat(),
        );
        assert_eq!(answer_chain(&a.0), Err(WireError::BadName));
        // A pointer forward, to a name that does exist further on.
        let mut a = Answer::to("x.example");
        let at = a.0.len() + 2 + 10;
        a.record(&ptr(12), wire::TYPE_CNAME, &ptr(at + 2 + 12));
        a.record(&ptr(12), 16, b"\x01a\x00");
        assert_eq!(answer_chain(&a.0), Err(WireError::BadName));
        // A pointer into the header.
        let mut a = Answer::to("x.example");
        a.record(&ptr(12), wire::TYPE_CNAME, &ptr(2));
        assert_eq!(answer_chain(&a.0), Err(WireError::BadName));
    }

    #[test]
    fn rdata_must_be_exactly_one_name() {
        let mut a = Answer::to("x.example");
        a.record(&ptr(12), wire::TYPE_CNAME, b"\x01y\x00junk");
        assert_eq!(answer_chain(&a.0), Err(WireError::BadName));
        let mut a = Answer::to("x.example");
        a.record(&ptr(12), wire::TYPE_CNAME, b"\x01y\x07example");
        assert!(answer_chain(&a.0).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = three_cnames();
        for len in 0..full.len() {
            assert!(answer_chain(&full[..len]).is_err(), "prefix of {len} bytes");
        }
    }

    #[test]
    fn long_names_are_rejected() {
        let mut a = Answer::to("x.example");
        // 5 labels of 63 bytes: 320 bytes uncompressed.
        let long: Vec<u8> = (0..5)
            .flat_map(|_| std::iter::once(63).chain([b'a'; 63]))
            .chain([0])
            .collect();
        a.record(&ptr(12), wire::TYPE_CNAME, &long);
        assert_eq!(answer_chain(&a.0), Err(WireError::BadName));
    }
}
