//! The per-query hot paths of the core crate: rule matching at 10, 10,000 and 1,000,000
//! rules, the byte-level wire helpers, and decoding a DoH GET's `dns` parameter.
//!
//! `cargo bench -p dohgate-core --bench hot_paths`; results in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dohgate_core::rules::{ForwardingRule, RuleSet};
use dohgate_core::wire;

fn rule_set(n: usize) -> RuleSet {
    let rules = (0..n)
        .map(|i| ForwardingRule::system(&format!("r{i}"), &format!("zone{i}.corp.example")))
        .collect();
    RuleSet::new(rules).expect("distinct domains")
}

fn rule_matching(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules/match_wire");
    for n in [10usize, 10_000, 1_000_000] {
        let set = rule_set(n);
        // A name four labels below a rule, and one no rule covers: the cost is one hash probe
        // per label either way.
        let hit =
            wire::name_to_wire(&format!("a.b.host.zone{}.corp.example", n / 2)).expect("name");
        let miss = wire::name_to_wire("a.b.host.elsewhere.example").expect("name");
        g.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, name| {
            b.iter(|| set.match_wire(black_box(name)).map(|(i, _)| i))
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, name| {
            b.iter(|| set.match_wire(black_box(name)).map(|(i, _)| i))
        });
    }
    g.finish();
}

/// An answer of the usual shape: a CNAME, two A records and the OPT record.
fn typical_answer(query: &[u8]) -> Vec<u8> {
    let q = wire::question(query).expect("question");
    let mut out = query[..q.end].to_vec();
    out[2] |= 0x80;
    out[3] = 0x80;
    out[6..8].copy_from_slice(&3u16.to_be_bytes());
    // The OPT record is appended below; the query's own does not come along.
    out[10..12].copy_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0x0e, 0x10, 0, 6]);
    out.extend_from_slice(&[3, b'c', b'd', b'n', 0xc0, 12]);
    for last in [1u8, 2] {
        out.extend_from_slice(&[0xc0, q.end as u8 + 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&[192, 0, 2, last]);
    }
    wire::push_opt(&mut out, 0, false);
    out
}

fn wire_helpers(c: &mut Criterion) {
    let query =
        wire::build_query(0x1234, "www.example.com", wire::TYPE_A, Some(1232)).expect("query");
    let answer = typical_answer(&query);
    assert_eq!(wire::min_ttl(&answer), Some(60), "a well-formed answer");
    let mut big = wire::error_response(&query, wire::Rcode::NoError).expect("answer");
    big.extend(std::iter::repeat_n(0u8, 1500));
    let mut g = c.benchmark_group("wire");
    g.bench_function("parse_query", |b| {
        b.iter(|| wire::parse_query(black_box(&query)))
    });
    g.bench_function("min_ttl", |b| b.iter(|| wire::min_ttl(black_box(&answer))));
    let mut msg = answer.clone();
    g.bench_function("set_id", |b| {
        b.iter(|| wire::set_id(black_box(&mut msg), black_box(0xbeef)))
    });
    g.bench_function("truncate_for_udp/fits", |b| {
        b.iter_batched(
            || answer.clone(),
            |a| wire::truncate_for_udp(a, 1232),
            criterion::BatchSize::SmallInput,
        )
    });
    g.bench_function("truncate_for_udp/cut", |b| {
        b.iter_batched(
            || big.clone(),
            |a| wire::truncate_for_udp(a, 512),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn doh_get_decoding(c: &mut Criterion) {
    let query = wire::build_query(0, "www.example.com", wire::TYPE_A, Some(1232)).expect("query");
    let param = URL_SAFE_NO_PAD.encode(&query);
    c.bench_function("doh/get_base64url_decode", |b| {
        b.iter(|| URL_SAFE_NO_PAD.decode(black_box(param.as_bytes())))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = rule_matching, wire_helpers, doh_get_decoding
}
criterion_main!(benches);
