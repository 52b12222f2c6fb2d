//! The answer cache: forwarded answers kept as bytes, served again with their TTLs counted
//! down, and served stale (RFC 8767) when every target of a rule fails.
//!
//! An entry is keyed by the question (name lower-cased, type, class) and the query bits that
//! change the answer (DO, CD, RD). It holds the answer as the target sent it, minus its OPT
//! record, plus the offsets of its TTL fields, so a hit is one copy and a few 4-byte writes:
//! no parsing. All the checking happens once, when an answer is stored:
//!
//! - only NOERROR and NXDOMAIN answers, not truncated, with no TTL of 0, are kept; a negative
//!   answer (NXDOMAIN or no answer records) needs an SOA and lives for min(SOA TTL, MINIMUM)
//!   (RFC 2308 §5);
//! - the answer's question must be the query's;
//! - every answer-section record must be owned by the query name or a name of the CNAME/DNAME
//!   chain that starts at it;
//! - every authority and additional record must be owned by a name within the rule's domain
//!   (the root for the default resolver). An answer with one that is not is passed to the
//!   client as the target sent it but is not cached: stripping the record would change the
//!   answer (a referral or a signature) in ways a forwarder cannot judge, so the gateway
//!   simply asks again next time;
//! - answers tailored to a client subnet (an EDNS Client Subnet option) or signed for one
//!   exchange (TSIG) are not shared.
//!
//! The OPT record is the client's business, not the entry's: a hit carries one (with the
//! client's DO bit and no options) exactly when the query did (RFC 6891 §7), so a client
//! without EDNS never sees one and upstream options (cookies, padding) never leak to others.
//!
//! Memory is bounded by `max_bytes`, counting key, answer and a fixed per-entry overhead;
//! eviction is quick_cache's S3-FIFO, so a flood of names asked once passes through the small
//! probation queue without pushing out the entries clients keep asking for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dohgate_core::config::CacheConfig;
use dohgate_core::wire::{self, Query};
use prometheus::{IntCounter, IntGauge};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::metrics::OutboundMetrics;

const TYPE_DNAME: u16 = 39;
const TYPE_TSIG: u16 = 250;
const OPTION_ECS: u16 = 8;
/// Longest key: a 255-byte name, type, class, the bits byte and the route.
const KEY_MAX: usize = 255 + 9;
const KEY_DO: u8 = 1;
const KEY_CD: u8 = 2;
const KEY_RD: u8 = 4;
/// The OPT record a hit appends for a client that used EDNS.
const OPT_LEN: usize = 11;
/// Names in one CNAME/DNAME chain beyond which an answer is not cached.
const MAX_CHAIN: usize = 16;
/// Hits after which an entry counts as popular enough to be refreshed before it expires.
const PREFETCH_MIN_HITS: u32 = 3;
/// Refreshes in flight at once, over all entries.
const MAX_PREFETCHES: usize = 32;
/// What an entry costs besides its key and answer bytes: the entry itself, the `Arc` counts,
/// and quick_cache's slot and hash-table share (measured roughly; it only has to be honest).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 16 + 48;

/// Why an answer was not cached; the labels of `dohgate_cache_uncacheable_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncacheable {
    /// Not NOERROR or NXDOMAIN (or an extended RCODE).
    Rcode,
    Truncated,
    /// A record with TTL 0.
    ZeroTtl,
    /// A negative answer without an SOA to say how long it holds.
    NoSoa,
    /// The answer's question is not the query's.
    Question,
    /// An answer record outside the query name's CNAME/DNAME chain.
    Chain,
    /// An authority or additional record outside the rule's domain.
    Bailiwick,
    /// Tailored to a client subnet or signed for one exchange.
    Private,
    /// Records that cannot be read, or laid out so they cannot be reworked safely.
    Malformed,
}

impl Uncacheable {
    pub const ALL: [Uncacheable; 9] = [
        Uncacheable::Rcode,
        Uncacheable::Truncated,
        Uncacheable::ZeroTtl,
        Uncacheable::NoSoa,
        Uncacheable::Question,
        Uncacheable::Chain,
        Uncacheable::Bailiwick,
        Uncacheable::Private,
        Uncacheable::Malformed,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Uncacheable::Rcode => "rcode",
            Uncacheable::Truncated => "truncated",
            Uncacheable::ZeroTtl => "zero_ttl",
            Uncacheable::NoSoa => "no_soa",
            Uncacheable::Question => "question",
            Uncacheable::Chain => "chain",
            Uncacheable::Bailiwick => "bailiwick",
            Uncacheable::Private => "private",
            Uncacheable::Malformed => "malformed",
        }
    }
}

/// One cached answer.
#[derive(Debug)]
struct Entry {
    /// The answer (ID 0, no OPT record, TTLs clamped), then its TTL offsets as big-endian u16.
    data: Box<[u8]>,
    answer_len: usize,
    stored: Instant,
    /// Seconds the entry is fresh: its smallest TTL, clamped.
    ttl: u32,
    hits: AtomicU32,
    /// Set once a refresh has been started, so there is at most one per entry.
    refreshing: AtomicBool,
}

impl Entry {
    fn answer(&self) -> &[u8] {
        &self.data[..self.answer_len]
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.data[self.answer_len..]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as usize)
    }
}

#[derive(Clone, Debug)]
struct EntryWeight;

impl Weighter<Box<[u8]>, Arc<Entry>> for EntryWeight {
    fn weight(&self, key: &Box<[u8]>, entry: &Arc<Entry>) -> u64 {
        (key.len() + entry.data.len() + ENTRY_OVERHEAD) as u64
    }
}

/// The metric handles the cache updates, resolved once.
#[derive(Debug)]
struct CacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    stale: IntCounter,
    prefetches: IntCounter,
    entries: IntGauge,
    bytes: IntGauge,
    uncacheable: [IntCounter; Uncacheable::ALL.len()],
}

/// A fresh answer from the cache.
#[derive(Debug)]
pub struct Hit {
    /// Ready to send: the client's ID and question, TTLs counted down.
    pub answer: Vec<u8>,
    /// Present when the entry is popular and close to expiry: the caller should ask its
    /// targets again in the background and store the answer, holding this until done.
    pub prefetch: Option<PrefetchPermit>,
}

/// One of the bounded number of refreshes that may be in flight; released on drop.
#[derive(Debug)]
pub struct PrefetchPermit {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for PrefetchPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer cache shared by every rule and protocol; see the module documentation.
#[derive(Debug)]
pub struct AnswerCache {
    cache: Cache<Box<[u8]>, Arc<Entry>, EntryWeight>,
    config: CacheConfig,
    prefetches_in_flight: Arc<AtomicUsize>,
    metrics: CacheMetrics,
}

impl AnswerCache {
    /// A cache sized and tuned by `config` (its `enabled` flag is the caller's to honour).
    pub fn new(config: &CacheConfig, metrics: &OutboundMetrics) -> Self {
        // A typical entry (an A or AAAA answer with a short chain) weighs 150-300 bytes; the
        // estimate only sizes the shards and the ghost list of recently evicted keys.
        let estimated_items = (config.max_bytes / 256).clamp(64, 1 << 24) as usize;
        let cache = Cache::with_weighter(estimated_items, config.max_bytes, EntryWeight);
        let uncacheable =
            Uncacheable::ALL.map(|r| metrics.cache_uncacheable.with_label_values(&[r.label()]));
        AnswerCache {
            cache,
            config: *config,
            prefetches_in_flight: Arc::new(AtomicUsize::new(0)),
            metrics: CacheMetrics {
                hits: metrics.cache_hits.clone(),
                misses: metrics.cache_misses.clone(),
                stale: metrics.cache_stale_answers.clone(),
                prefetches: metrics.cache_prefetches.clone(),
                entries: metrics.cache_entries.clone(),
                bytes: metrics.cache_bytes.clone(),
                uncacheable,
            },
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Entries held, fresh and expired.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Bytes held, as counted against `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// A fresh answer to `msg` (parsed as `q`) stored for `route`, or `None` (counted as a
    /// miss).
    pub fn lookup(&self, msg: &[u8], q: &Query, route: u32, now: Instant) -> Option<Hit> {
        let mut buf = [0u8; KEY_MAX];
        let key = cache_key(msg, q, route, &mut buf);
        let hit = self.cache.get(key).and_then(|entry| {
            let age = now.saturating_duration_since(entry.stored).as_secs();
            if age >= u64::from(entry.ttl) {
                return None;
            }
            let answer = render(&entry, msg, q, |ttl| ttl.saturating_sub(age as u32))?;
            let hits = entry.hits.fetch_add(1, Ordering::Relaxed).saturating_add(1);
            let remaining = u64::from(entry.ttl) - age;
            let prefetch = (self.config.prefetch
                && hits >= PREFETCH_MIN_HITS
                && remaining * 10 <= u64::from(entry.ttl)
                && !entry.refreshing.load(Ordering::Relaxed))
            .then(|| self.prefetch_permit(&entry))
            .flatten();
            Some(Hit { answer, prefetch })
        });
        match &hit {
            Some(h) => {
                self.metrics.hits.inc();
                if h.prefetch.is_some() {
                    self.metrics.prefetches.inc();
                }
            }
            None => self.metrics.misses.inc(),
        }
        hit
    }

    fn prefetch_permit(&self, entry: &Entry) -> Option<PrefetchPermit> {
        let in_flight = &self.prefetches_in_flight;
        if in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_PREFETCHES {
            in_flight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let permit = PrefetchPermit {
            in_flight: in_flight.clone(),
        };
        // Only the first caller to flip the flag refreshes; the permit of any other is dropped.
        (!entry.refreshing.swap(true, Ordering::Relaxed)).then_some(permit)
    }

    /// True if an expired entry for the query could still answer (RFC 8767), without
    /// counting anything: whether waiting on the targets has a fallback.
    pub fn has_stale(&self, msg: &[u8], q: &Query, route: u32, now: Instant) -> bool {
        if self.config.serve_stale.is_zero() {
            return false;
        }
        let mut buf = [0u8; KEY_MAX];
        let key = cache_key(msg, q, route, &mut buf);
        self.cache.peek(key).is_some_and(|entry| {
            let age = now.saturating_duration_since(entry.stored);
            let fresh_for = Duration::from_secs(u64::from(entry.ttl));
            age.saturating_sub(fresh_for) < self.config.serve_stale
        })
    }

    /// An expired answer to serve when every target failed (RFC 8767): TTLs set to
    /// `stale_ttl`, if the entry expired less than `serve_stale` ago. A fresh entry (stored by
    /// a concurrent query meanwhile) is served as a hit.
    pub fn stale(&self, msg: &[u8], q: &Query, route: u32, now: Instant) -> Option<Vec<u8>> {
        if self.config.serve_stale.is_zero() {
            return None;
        }
        let mut buf = [0u8; KEY_MAX];
        let key = cache_key(msg, q, route, &mut buf);
        let entry = self.cache.peek(key)?;
        let age = now.saturating_duration_since(entry.stored);
        let fresh_for = Duration::from_secs(u64::from(entry.ttl));
        if age < fresh_for {
            let age = age.as_secs() as u32;
            return render(&entry, msg, q, |ttl| ttl.saturating_sub(age));
        }
        if age - fresh_for >= self.config.serve_stale {
            // Too old to ever be served again: give the memory back now.
            self.cache.remove(key);
            return None;
        }
        let stale_ttl = self.config.stale_ttl;
        let answer = render(&entry, msg, q, |_| stale_ttl)?;
        self.metrics.stale.inc();
        Some(answer)
    }

    /// Stores `answer` to `query` if it passes the checks of the module documentation;
    /// `zone` is the forwarding rule's domain in wire format (`[0]`, the root, for the default
    /// resolver). `route` identifies where the query was sent (the rule), and is part of the
    /// key: once endpoints route one name differently, an answer fetched for one route must
    /// never answer a query that routes elsewhere. A refused answer is counted by reason.
    pub fn insert(
        &self,
        query: &[u8],
        q: &Query,
        answer: &[u8],
        zone: &[u8],
        route: u32,
        now: Instant,
    ) -> Result<(), Uncacheable> {
        let prepared = match prepare(query, q, answer, zone, &self.config) {
            Ok(p) => p,
            Err(reason) => {
                if let Some(c) = Uncacheable::ALL
                    .iter()
                    .position(|r| *r == reason)
                    .and_then(|i| self.metrics.uncacheable.get(i))
                {
                    c.inc();
                }
                return Err(reason);
            }
        };
        let mut buf = [0u8; KEY_MAX];
        let key: Box<[u8]> = cache_key(query, q, route, &mut buf).into();
        self.cache.insert(
            key,
            Arc::new(Entry {
                data: prepared.data,
                answer_len: prepared.answer_len,
                stored: now,
                ttl: prepared.ttl,
                hits: AtomicU32::new(0),
                refreshing: AtomicBool::new(false),
            }),
        );
        // Inserting is the only way the cache grows or evicts, so the gauges are exact when
        // set here; the cost (one read lock per shard) is small beside the upstream exchange
        // that produced the answer.
        self.metrics.entries.set(self.cache.len() as i64);
        self.metrics.bytes.set(self.cache.weight() as i64);
        Ok(())
    }
}

/// The key of a query: its name lower-cased, type, class, the bits that change the answer,
/// and the route it was sent by.
fn cache_key<'b>(msg: &[u8], q: &Query, route: u32, buf: &'b mut [u8; KEY_MAX]) -> &'b [u8] {
    let name = msg
        .get(wire::HEADER_LEN..wire::HEADER_LEN + q.question.name_len)
        .unwrap_or(&[]);
    let n = name.len().min(255);
    for (d, s) in buf[..n].iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    buf[n..n + 2].copy_from_slice(&q.question.qtype.to_be_bytes());
    buf[n + 2..n + 4].copy_from_slice(&q.question.qclass.to_be_bytes());
    let mut bits = 0;
    if q.edns.is_some_and(|e| e.dnssec_ok) {
        bits |= KEY_DO;
    }
    if q.flags & wire::FLAG_CD != 0 {
        bits |= KEY_CD;
    }
    if q.flags & wire::FLAG_RD != 0 {
        bits |= KEY_RD;
    }
    buf[n + 4] = bits;
    buf[n + 5..n + 9].copy_from_slice(&route.to_be_bytes());
    &buf[..n + 9]
}

/// Builds the client's answer from an entry: one allocation, sized for the OPT record too.
fn render(entry: &Entry, msg: &[u8], q: &Query, ttl: impl Fn(u32) -> u32) -> Option<Vec<u8>> {
    let stored = entry.answer();
    let qbytes = msg.get(wire::HEADER_LEN..q.question.end)?;
    let extra = if q.edns.is_some() { OPT_LEN } else { 0 };
    let mut out = Vec::with_capacity(stored.len() + extra);
    out.extend_from_slice(stored);
    wire::set_id(&mut out, q.id);
    // The same key means the same question up to case: put back the client's own case (0x20).
    let dst = out.get_mut(wire::HEADER_LEN..q.question.end)?;
    if dst.len() != qbytes.len() {
        return None;
    }
    dst.copy_from_slice(qbytes);
    for at in entry.ttl_offsets() {
        if let Some(field) = out.get_mut(at..at + 4) {
            let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&ttl(old).to_be_bytes());
        }
    }
    // RFC 6840 §5.8: AD only for a client that asked for it (AD or DO in its query).
    let asked_ad = q.flags & 0x0020 != 0 || q.edns.is_some_and(|e| e.dnssec_ok);
    if !asked_ad && let Some(b) = out.get_mut(3) {
        *b &= !0x20;
    }
    if let Some(e) = q.edns {
        wire::push_opt(&mut out, 0, e.dnssec_ok);
    }
    Some(out)
}

/// An answer checked and reworked for storing.
#[derive(Debug)]
struct Prepared {
    data: Box<[u8]>,
    answer_len: usize,
    ttl: u32,
}

/// Reads a possibly compressed name into `out`, lower-cased, in wire format; returns its
/// length. Pointer loops and overlong names are errors.
fn read_name(msg: &[u8], mut at: usize, out: &mut [u8; 255]) -> Option<usize> {
    let mut len = 0;
    let mut jumps = 0;
    loop {
        let b = *msg.get(at)? as usize;
        match b & 0xc0 {
            0x00 if b == 0 => {
                *out.get_mut(len)? = 0;
                return Some(len + 1);
            }
            0x00 => {
                let label = msg.get(at + 1..at + 1 + b)?;
                let dst = out.get_mut(len..len + 1 + b)?;
                dst[0] = b as u8;
                for (d, s) in dst[1..].iter_mut().zip(label) {
                    *d = s.to_ascii_lowercase();
                }
                len += 1 + b;
                at += 1 + b;
            }
            0xc0 => {
                jumps += 1;
                if jumps > 64 {
                    return None;
                }
                at = ((b & 0x3f) << 8) | *msg.get(at + 1)? as usize;
            }
            _ => return None,
        }
    }
}

/// True if wire-format `name` is `zone` or below it (both lower-case).
fn within(name: &[u8], zone: &[u8]) -> bool {
    if zone == [0] {
        return true;
    }
    let mut at = 0;
    while let Some(suffix) = name.get(at..) {
        if suffix == zone {
            return true;
        }
        match suffix.first() {
            Some(&l) if l != 0 => at += 1 + l as usize,
            _ => return false,
        }
    }
    false
}

/// Checks an answer and turns it into what an entry stores; see the module documentation.
fn prepare(
    query: &[u8],
    q: &Query,
    answer: &[u8],
    zone: &[u8],
    config: &CacheConfig,
) -> Result<Prepared, Uncacheable> {
    let flags = wire::flags(answer);
    if answer.len() < wire::HEADER_LEN || flags & wire::FLAG_QR == 0 || (flags >> 11) & 0xf != 0 {
        return Err(Uncacheable::Malformed);
    }
    let rcode = flags & 0xf;
    if rcode != 0 && rcode != 3 {
        return Err(Uncacheable::Rcode);
    }
    if flags & wire::FLAG_TC != 0 {
        return Err(Uncacheable::Truncated);
    }
    let counts = wire::counts(answer);
    if counts[0] != 1 || !wire::same_question(query, &q.question, answer) {
        return Err(Uncacheable::Question);
    }
    let aq = wire::question(answer).map_err(|_| Uncacheable::Question)?;
    if aq.end != q.question.end {
        return Err(Uncacheable::Question);
    }

    // Walk every record once: positions, the OPT record, and the checks that need no names.
    let mut records = Vec::with_capacity(counts[1] as usize + counts[2] as usize + 4);
    let mut opt: Option<wire::Record> = None;
    let mut pos = aq.end;
    let mut has_soa = false;
    for (section, count) in [(1u8, counts[1]), (2, counts[2]), (3, counts[3])] {
        for _ in 0..count {
            let rec = wire::read_record(answer, pos).map_err(|_| Uncacheable::Malformed)?;
            pos = rec.end;
            if rec.rtype == wire::TYPE_OPT {
                if section != 3 || opt.is_some() {
                    return Err(Uncacheable::Malformed);
                }
                opt = Some(rec);
                continue;
            }
            if opt.is_some() {
                // Removing an OPT record from the middle would move the records after it and
                // break compression pointers into them.
                return Err(Uncacheable::Malformed);
            }
            if rec.rtype == TYPE_TSIG {
                return Err(Uncacheable::Private);
            }
            has_soa |= section == 2 && rec.rtype == wire::TYPE_SOA;
            records.push((section, rec));
        }
    }
    if pos != answer.len() {
        return Err(Uncacheable::Malformed);
    }
    if let Some(o) = opt {
        // Extended RCODE bits (BADCOOKIE and friends) are per-exchange.
        if answer.get(o.ttl_at) != Some(&0) {
            return Err(Uncacheable::Rcode);
        }
        let mut at = o.rdata_at;
        while at + 4 <= o.end {
            let code = wire::u16_at(answer, at).map_err(|_| Uncacheable::Malformed)?;
            let len = wire::u16_at(answer, at + 2).map_err(|_| Uncacheable::Malformed)? as usize;
            if code == OPTION_ECS {
                return Err(Uncacheable::Private);
            }
            at += 4 + len;
        }
    }
    let negative = rcode == 3 || counts[1] == 0;
    if negative && !has_soa {
        return Err(Uncacheable::NoSoa);
    }
    check_owners(answer, &records, q.question.name(query), zone)?;

    // The stored answer: ID 0, the OPT record (always last) cut off, TTLs reworked in place.
    let answer_len = opt.map_or(answer.len(), |o| o.start);
    let mut data = Vec::with_capacity(answer_len + 2 * records.len());
    data.extend_from_slice(&answer[..answer_len]);
    wire::set_id(&mut data, 0);
    if opt.is_some() {
        data[10..12].copy_from_slice(&(counts[3] - 1).to_be_bytes());
    }
    let mut min_ttl = u32::MAX;
    for (section, rec) in &records {
        let mut ttl = wire::u32_at(answer, rec.ttl_at).map_err(|_| Uncacheable::Malformed)?;
        if ttl > i32::MAX as u32 {
            // RFC 2181 §8: a TTL with the top bit set means zero.
            ttl = 0;
        }
        if *section == 2 && rec.rtype == wire::TYPE_SOA && rec.end >= rec.rdata_at + 22 {
            // RFC 2308 §5: a negative answer lives for min(SOA TTL, SOA MINIMUM), and the SOA
            // is handed on with that TTL.
            ttl = ttl.min(wire::u32_at(answer, rec.end - 4).map_err(|_| Uncacheable::Malformed)?);
        }
        if ttl == 0 {
            return Err(Uncacheable::ZeroTtl);
        }
        min_ttl = min_ttl.min(ttl);
        let ttl = ttl.clamp(config.min_ttl, config.max_ttl);
        data[rec.ttl_at..rec.ttl_at + 4].copy_from_slice(&ttl.to_be_bytes());
    }
    if records.is_empty() || answer_len > u16::MAX as usize {
        return Err(Uncacheable::Malformed);
    }
    for (_, rec) in &records {
        data.extend_from_slice(&(rec.ttl_at as u16).to_be_bytes());
    }
    Ok(Prepared {
        data: data.into_boxed_slice(),
        answer_len,
        ttl: min_ttl.clamp(config.min_ttl, config.max_ttl),
    })
}

/// The poisoning checks on owner names: answer records on the query name's chain, the other
/// sections within `zone`.
fn check_owners(
    answer: &[u8],
    records: &[(u8, wire::Record)],
    qname: &[u8],
    zone: &[u8],
) -> Result<(), Uncacheable> {
    let mut name = [0u8; 255];
    let mut lower_q = [0u8; 255];
    let qname = wire::lowercase_name(qname, &mut lower_q);
    let answers: Vec<&wire::Record> = records
        .iter()
        .filter(|(s, _)| *s == 1)
        .map(|(_, r)| r)
        .collect();
    let mut chain: Vec<Vec<u8>> = vec![qname.to_vec()];
    let mut accepted = vec![false; answers.len()];
    // Records may come in any order: go round until a pass adds no name to the chain.
    loop {
        let mut grew = false;
        for (i, rec) in answers.iter().enumerate() {
            if accepted[i] {
                continue;
            }
            let n = read_name(answer, rec.start, &mut name).ok_or(Uncacheable::Malformed)?;
            let owner = &name[..n];
            let on_chain = match rec.rtype {
                // A DNAME's owner is an ancestor of a chain name (RFC 6672 §2.2); the CNAME
                // synthesised from it carries the chain on.
                TYPE_DNAME => chain.iter().any(|c| c != owner && within(c, owner)),
                _ => chain.iter().any(|c| c == owner),
            };
            if !on_chain {
                continue;
            }
            accepted[i] = true;
            if rec.rtype == wire::TYPE_CNAME {
                let t = read_name(answer, rec.rdata_at, &mut name).ok_or(Uncacheable::Malformed)?;
                if !chain.iter().any(|c| c[..] == name[..t]) {
                    if chain.len() >= MAX_CHAIN {
                        return Err(Uncacheable::Chain);
                    }
                    chain.push(name[..t].to_vec());
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    if accepted.iter().any(|a| !a) {
        return Err(Uncacheable::Chain);
    }
    if zone != [0] {
        for (_, rec) in records.iter().filter(|(s, _)| *s != 1) {
            let n = read_name(answer, rec.start, &mut name).ok_or(Uncacheable::Malformed)?;
            if !within(&name[..n], zone) {
                return Err(Uncacheable::Bailiwick);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Registry;

    const A: u16 = 1;

    fn cache_with(config: CacheConfig) -> AnswerCache {
        let metrics = OutboundMetrics::register(&Registry::new()).expect("metrics");
        AnswerCache::new(&config, &metrics)
    }

    fn cache() -> AnswerCache {
        cache_with(CacheConfig::default())
    }

    fn name(n: &str) -> Vec<u8> {
        wire::name_to_wire(n).expect("name")
    }

    /// One record: section, owner, type, TTL, rdata.
    struct R(u8, &'static str, u16, u32, Vec<u8>);

    fn soa(ttl: u32, minimum: u32) -> R {
        let mut rdata = name("ns.example.test");
        rdata.extend(name("admin.example.test"));
        for v in [1u32, 3600, 600, 86400, minimum] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        R(2, "example.test", wire::TYPE_SOA, ttl, rdata)
    }

    fn a(owner: &'static str, ttl: u32) -> R {
        R(1, owner, A, ttl, vec![192, 0, 2, 1])
    }

    /// An answer to `query` (its question copied, lower-cased as some servers do).
    fn answer(query: &[u8], rcode: u8, records: &[R]) -> Vec<u8> {
        let q = wire::question(query).expect("question");
        let mut out = query[..q.end].to_vec();
        out[2] = 0x80 | (query[2] & 0x01);
        out[3] = 0x80 | rcode;
        for b in &mut out[wire::HEADER_LEN..wire::HEADER_LEN + q.name_len] {
            *b = b.to_ascii_lowercase();
        }
        let mut c = [1u16, 0, 0, 0];
        for section in 1..=3u8 {
            for r in records.iter().filter(|r| r.0 == section) {
                out.extend(name(r.1));
                out.extend_from_slice(&r.2.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes());
                out.extend_from_slice(&r.3.to_be_bytes());
                out.extend_from_slice(&(r.4.len() as u16).to_be_bytes());
                out.extend_from_slice(&r.4);
                c[section as usize] += 1;
            }
        }
        for (i, v) in c.iter().enumerate() {
            out[4 + 2 * i..6 + 2 * i].copy_from_slice(&v.to_be_bytes());
        }
        if wire::parse_query(query).expect("query").edns.is_some() {
            wire::push_opt(&mut out, 0, false);
        }
        out
    }

    fn query(id: u16, n: &str, edns: bool) -> (Vec<u8>, Query) {
        let m = wire::build_query(id, n, A, edns.then_some(1232)).expect("query");
        let q = wire::parse_query(&m).expect("parses");
        (m, q)
    }

    fn with_do(mut m: Vec<u8>) -> (Vec<u8>, Query) {
        let len = m.len();
        m[len - 4] |= 0x80;
        let q = wire::parse_query(&m).expect("parses");
        (m, q)
    }

    /// TTLs of the answer's non-OPT records, in order.
    fn ttls(msg: &[u8]) -> Vec<u32> {
        let q = wire::question(msg).expect("question");
        let c = wire::counts(msg);
        let mut pos = q.end;
        let mut out = Vec::new();
        for _ in 0..c[1] + c[2] + c[3] {
            let r = wire::read_record(msg, pos).expect("record");
            if r.rtype != wire::TYPE_OPT {
                out.push(wire::u32_at(msg, r.ttl_at).expect("ttl"));
            }
            pos = r.end;
        }
        out
    }

    const ROOT: &[u8] = &[0];

    #[test]
    fn hit_counts_ttl_down_with_the_clients_id_and_case() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "www.example.test", false);
        let ans = answer(&m, 0, &[a("www.example.test", 300)]);
        c.insert(&m, &q, &ans, ROOT, 0, t0).expect("cacheable");
        let (m2, q2) = query(0xbeef, "WwW.ExAmple.TEST", false);
        let hit = c
            .lookup(&m2, &q2, 0, t0 + Duration::from_millis(5_500))
            .expect("hit");
        assert_eq!(wire::id(&hit.answer), Some(0xbeef));
        assert_eq!(
            wire::question(&hit.answer).expect("q").name(&hit.answer),
            q2.question.name(&m2)
        );
        assert_eq!(ttls(&hit.answer), [295]);
        assert!(hit.prefetch.is_none());
        assert!(
            c.lookup(&m2, &q2, 0, t0 + Duration::from_secs(300))
                .is_none()
        );
    }

    #[test]
    fn do_cd_and_rd_bits_are_part_of_the_key() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "a.test", true);
        c.insert(&m, &q, &answer(&m, 0, &[a("a.test", 60)]), ROOT, 0, t0)
            .expect("cacheable");
        let (md, qd) = with_do(m.clone());
        assert!(c.lookup(&md, &qd, 0, t0).is_none(), "DO must not share");
        let mut mc = m.clone();
        mc[3] |= 0x10;
        let qc = wire::parse_query(&mc).expect("parses");
        assert!(c.lookup(&mc, &qc, 0, t0).is_none(), "CD must not share");
        let mut mr = m.clone();
        mr[2] &= !0x01;
        let qr = wire::parse_query(&mr).expect("parses");
        assert!(c.lookup(&mr, &qr, 0, t0).is_none(), "RD must not share");
        assert!(c.lookup(&m, &q, 0, t0).is_some());
    }

    #[test]
    fn opt_record_follows_the_client_not_the_entry() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "a.test", true);
        let ans = answer(&m, 0, &[a("a.test", 60)]);
        assert_eq!(wire::counts(&ans)[3], 1);
        c.insert(&m, &q, &ans, ROOT, 0, t0).expect("cacheable");
        let (plain, pq) = query(2, "a.test", false);
        let hit = c.lookup(&plain, &pq, 0, t0).expect("hit");
        assert_eq!(
            wire::counts(&hit.answer),
            [1, 1, 0, 0],
            "no OPT without EDNS"
        );
        assert!(wire::parse_query(&m).is_ok());
        let hit = c.lookup(&m, &q, 0, t0).expect("hit");
        assert_eq!(wire::counts(&hit.answer)[3], 1, "OPT for an EDNS client");
        assert_eq!(hit.answer.len(), ans.len());
        // And the other way round: stored from a client without EDNS, served to one with it.
        let c = cache();
        c.insert(
            &plain,
            &pq,
            &answer(&plain, 0, &[a("a.test", 60)]),
            ROOT,
            0,
            t0,
        )
        .expect("cacheable");
        let hit = c.lookup(&m, &q, 0, t0).expect("hit");
        assert_eq!(wire::counts(&hit.answer)[3], 1);
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "nx.example.test", false);
        let ans = answer(&m, 3, &[soa(3600, 60)]);
        c.insert(&m, &q, &ans, ROOT, 0, t0).expect("cacheable");
        let hit = c
            .lookup(&m, &q, 0, t0 + Duration::from_secs(10))
            .expect("hit");
        assert_eq!(wire::rcode(&hit.answer), 3);
        assert_eq!(ttls(&hit.answer), [50]);
        assert!(c.lookup(&m, &q, 0, t0 + Duration::from_secs(60)).is_none());
        // NODATA: NOERROR without answer records, the same rule.
        let (m, q) = query(2, "nodata.example.test", false);
        c.insert(&m, &q, &answer(&m, 0, &[soa(30, 900)]), ROOT, 0, t0)
            .expect("cacheable");
        let hit = c.lookup(&m, &q, 0, t0).expect("hit");
        assert_eq!(ttls(&hit.answer), [30]);
    }

    #[test]
    fn refuses_what_must_not_be_cached() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "www.corp.test", false);
        let corp = name("corp.test");
        let check = |ans: Vec<u8>, zone: &[u8], want: Uncacheable| {
            assert_eq!(c.insert(&m, &q, &ans, zone, 0, t0), Err(want));
        };
        check(answer(&m, 2, &[]), ROOT, Uncacheable::Rcode);
        check(answer(&m, 5, &[]), ROOT, Uncacheable::Rcode);
        check(answer(&m, 1, &[]), ROOT, Uncacheable::Rcode);
        let mut tc = answer(&m, 0, &[a("www.corp.test", 60)]);
        tc[2] |= 0x02;
        check(tc, ROOT, Uncacheable::Truncated);
        check(
            answer(&m, 0, &[a("www.corp.test", 0)]),
            ROOT,
            Uncacheable::ZeroTtl,
        );
        check(answer(&m, 3, &[]), ROOT, Uncacheable::NoSoa);
        let (other, _) = query(1, "mail.corp.test", false);
        check(
            answer(&other, 0, &[a("mail.corp.test", 60)]),
            ROOT,
            Uncacheable::Question,
        );
        check(
            answer(&m, 0, &[a("www.corp.test", 60), a("bank.test", 60)]),
            ROOT,
            Uncacheable::Chain,
        );
        let ns = R(2, "test", wire::TYPE_NS, 60, name("ns.evil.test"));
        check(
            answer(&m, 0, &[a("www.corp.test", 60), ns]),
            &corp,
            Uncacheable::Bailiwick,
        );
        let glue = R(3, "ns.evil.test", A, 60, vec![198, 51, 100, 1]);
        check(
            answer(&m, 0, &[a("www.corp.test", 60), glue]),
            &corp,
            Uncacheable::Bailiwick,
        );
        // In bailiwick, and anything goes below the root.
        let ns = R(2, "corp.test", wire::TYPE_NS, 60, name("ns.corp.test"));
        c.insert(
            &m,
            &q,
            &answer(&m, 0, &[a("www.corp.test", 60), ns]),
            &corp,
            0,
            t0,
        )
        .expect("in bailiwick");
        let glue = R(3, "ns.evil.test", A, 60, vec![198, 51, 100, 1]);
        c.insert(
            &m,
            &q,
            &answer(&m, 0, &[a("www.corp.test", 60), glue]),
            ROOT,
            0,
            t0,
        )
        .expect("root bailiwick");
        assert!(c.lookup(&m, &q, 0, t0).is_some());
    }

    #[test]
    fn cname_and_dname_chains_are_followed() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "www.corp.test", false);
        let chain = [
            // Out of order on purpose: the check does not rely on the order.
            a("edge.cdn.test", 20),
            R(
                1,
                "alias.corp.test",
                wire::TYPE_CNAME,
                300,
                name("edge.cdn.test"),
            ),
            R(
                1,
                "www.corp.test",
                wire::TYPE_CNAME,
                300,
                name("ALIAS.corp.test"),
            ),
        ];
        c.insert(&m, &q, &answer(&m, 0, &chain), ROOT, 0, t0)
            .expect("chain is cacheable");
        let hit = c.lookup(&m, &q, 0, t0).expect("hit");
        assert_eq!(ttls(&hit.answer), [20, 300, 300]);
        assert!(c.lookup(&m, &q, 0, t0 + Duration::from_secs(20)).is_none());

        let (m, q) = query(2, "host.old.test", false);
        let dname = [
            R(1, "old.test", TYPE_DNAME, 300, name("new.test")),
            R(
                1,
                "host.old.test",
                wire::TYPE_CNAME,
                300,
                name("host.new.test"),
            ),
            a("host.new.test", 300),
        ];
        c.insert(&m, &q, &answer(&m, 0, &dname), ROOT, 0, t0)
            .expect("DNAME chain is cacheable");
        let unrelated = [R(1, "other.test", TYPE_DNAME, 300, name("new.test"))];
        assert_eq!(
            c.insert(&m, &q, &answer(&m, 0, &unrelated), ROOT, 0, t0),
            Err(Uncacheable::Chain)
        );
    }

    #[test]
    fn ttls_are_clamped() {
        let c = cache_with(CacheConfig {
            min_ttl: 30,
            max_ttl: 100,
            ..CacheConfig::default()
        });
        let t0 = Instant::now();
        let (m, q) = query(1, "a.test", false);
        c.insert(&m, &q, &answer(&m, 0, &[a("a.test", 5)]), ROOT, 0, t0)
            .expect("cacheable");
        assert_eq!(ttls(&c.lookup(&m, &q, 0, t0).expect("hit").answer), [30]);
        let (m, q) = query(1, "b.test", false);
        c.insert(&m, &q, &answer(&m, 0, &[a("b.test", 100_000)]), ROOT, 0, t0)
            .expect("cacheable");
        assert_eq!(ttls(&c.lookup(&m, &q, 0, t0).expect("hit").answer), [100]);
        assert!(c.lookup(&m, &q, 0, t0 + Duration::from_secs(100)).is_none());
    }

    #[test]
    fn serves_stale_within_the_limit_only() {
        let c = cache_with(CacheConfig {
            serve_stale: Duration::from_secs(60),
            ..CacheConfig::default()
        });
        let t0 = Instant::now();
        let (m, q) = query(1, "a.test", false);
        c.insert(&m, &q, &answer(&m, 0, &[a("a.test", 10)]), ROOT, 0, t0)
            .expect("cacheable");
        assert_eq!(
            ttls(
                &c.stale(&m, &q, 0, t0 + Duration::from_secs(4))
                    .expect("fresh")
            ),
            [6]
        );
        assert!(c.lookup(&m, &q, 0, t0 + Duration::from_secs(11)).is_none());
        let stale = c
            .stale(&m, &q, 0, t0 + Duration::from_secs(69))
            .expect("stale");
        assert_eq!(ttls(&stale), [30]);
        assert_eq!(wire::id(&stale), Some(1));
        assert!(c.stale(&m, &q, 0, t0 + Duration::from_secs(71)).is_none());
        assert!(c.is_empty(), "an entry too old to serve is dropped");

        let off = cache_with(CacheConfig {
            serve_stale: Duration::ZERO,
            ..CacheConfig::default()
        });
        off.insert(&m, &q, &answer(&m, 0, &[a("a.test", 10)]), ROOT, 0, t0)
            .expect("cacheable");
        assert!(off.stale(&m, &q, 0, t0 + Duration::from_secs(11)).is_none());
    }

    #[test]
    fn popular_entries_are_prefetched_once() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(1, "a.test", false);
        c.insert(&m, &q, &answer(&m, 0, &[a("a.test", 100)]), ROOT, 0, t0)
            .expect("cacheable");
        for _ in 0..3 {
            assert!(c.lookup(&m, &q, 0, t0).expect("hit").prefetch.is_none());
        }
        let late = t0 + Duration::from_secs(95);
        let permit = c.lookup(&m, &q, 0, late).expect("hit").prefetch;
        assert!(permit.is_some(), "popular and close to expiry");
        assert!(c.lookup(&m, &q, 0, late).expect("hit").prefetch.is_none());
        drop(permit);
        assert_eq!(c.prefetches_in_flight.load(Ordering::Relaxed), 0);
        // A refreshed entry starts over.
        c.insert(&m, &q, &answer(&m, 0, &[a("a.test", 100)]), ROOT, 0, late)
            .expect("cacheable");
        assert!(c.lookup(&m, &q, 0, late).expect("hit").prefetch.is_none());

        let off = cache_with(CacheConfig {
            prefetch: false,
            ..CacheConfig::default()
        });
        off.insert(&m, &q, &answer(&m, 0, &[a("a.test", 100)]), ROOT, 0, t0)
            .expect("cacheable");
        for _ in 0..5 {
            assert!(off.lookup(&m, &q, 0, late).expect("hit").prefetch.is_none());
        }
    }

    #[test]
    fn a_flood_of_unique_names_stays_within_max_bytes() {
        let max_bytes = 1 << 20;
        let c = cache_with(CacheConfig {
            max_bytes,
            ..CacheConfig::default()
        });
        let t0 = Instant::now();
        // A popular name asked between every few flood names must survive the flood.
        let (hot, hq) = query(1, "popular.example.test", false);
        c.insert(
            &hot,
            &hq,
            &answer(&hot, 0, &[a("popular.example.test", 3600)]),
            ROOT,
            0,
            t0,
        )
        .expect("cacheable");
        let mut hot_hits = 0;
        for i in 0..100_000u32 {
            let n = format!("n{i}.flood.example.test");
            let m = wire::build_query(1, &n, A, None).expect("query");
            let q = wire::parse_query(&m).expect("parses");
            // Built by hand (owner a pointer to the question) to keep 100k inserts quick.
            let mut ans = m[..q.question.end].to_vec();
            ans[2] |= 0x80;
            ans[6..8].copy_from_slice(&1u16.to_be_bytes());
            ans.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            c.insert(&m, &q, &ans, ROOT, 0, t0).expect("cacheable");
            assert!(
                c.bytes() <= max_bytes,
                "{} bytes after {i} names",
                c.bytes()
            );
            if i % 4 == 0 && c.lookup(&hot, &hq, 0, t0).is_some() {
                hot_hits += 1;
            }
        }
        assert!(c.len() > 1000, "the cache holds entries: {}", c.len());
        assert!(
            hot_hits > 24_000,
            "the popular name was evicted by the flood ({hot_hits} hits)"
        );
    }

    #[test]
    fn never_panics_on_arbitrary_answers() {
        let c = cache();
        let t0 = Instant::now();
        let (m, q) = query(7, "fuzz.example.test", true);
        let base = answer(
            &m,
            0,
            &[
                R(
                    1,
                    "fuzz.example.test",
                    wire::TYPE_CNAME,
                    60,
                    name("b.example.test"),
                ),
                a("b.example.test", 60),
                soa(60, 60),
            ],
        );
        let mut seed = 0x9e37_79b9_u32;
        for len in 0..=base.len() {
            let _ = c.insert(&m, &q, &base[..len], ROOT, 0, t0);
        }
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut b = base.clone();
            let at = seed as usize % b.len();
            b[at] = (seed >> 8) as u8;
            if c.insert(&m, &q, &b, &name("example.test"), 0, t0).is_ok() {
                let _ = c.lookup(&m, &q, 0, t0);
            }
        }
    }
}
