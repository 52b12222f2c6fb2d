//! The answer cache on the query path: a hit (lookup and rendering the client's answer), a
//! miss, and storing an answer (the checks plus the insert).
//!
//! `cargo bench -p dohgate-outbound --bench cache`; results in docs/benchmarks.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dohgate_core::config::CacheConfig;
use dohgate_core::wire;
use dohgate_outbound::{AnswerCache, OutboundMetrics};
use prometheus::Registry;

fn answer(query: &[u8]) -> Vec<u8> {
    let q = wire::question(query).expect("question");
    let mut out = query[..q.end].to_vec();
    out[2] |= 0x80;
    out[3] = 0x80;
    out[6..8].copy_from_slice(&2u16.to_be_bytes());
    // The OPT record is appended below; the query's own does not come along.
    out[10..12].copy_from_slice(&0u16.to_be_bytes());
    for last in [1u8, 2] {
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 192, 0, 2, last]);
    }
    if wire::parse_query(query).expect("query").edns.is_some() {
        wire::push_opt(&mut out, 0, false);
    }
    out
}

fn cache(c: &mut Criterion) {
    let metrics = OutboundMetrics::register(&Registry::new()).expect("metrics");
    let cache = AnswerCache::new(&CacheConfig::default(), &metrics);
    let now = Instant::now();
    let root = [0u8];
    // A warm cache: 100,000 entries besides the one asked for.
    for i in 0..100_000u32 {
        let m = wire::build_query(1, &format!("n{i}.example.com"), wire::TYPE_A, Some(1232))
            .expect("query");
        let q = wire::parse_query(&m).expect("parses");
        cache
            .insert(&m, &q, &answer(&m), &root, 0, now)
            .expect("cacheable");
    }
    let hot = wire::build_query(7, "www.Example.com", wire::TYPE_A, Some(1232)).expect("query");
    let hq = wire::parse_query(&hot).expect("parses");
    let hot_answer = answer(&hot);
    cache
        .insert(&hot, &hq, &hot_answer, &root, 0, now)
        .expect("cacheable");
    let cold = wire::build_query(7, "absent.example.com", wire::TYPE_A, Some(1232)).expect("q");
    let cq = wire::parse_query(&cold).expect("parses");

    let mut g = c.benchmark_group("cache");
    let later = now + Duration::from_secs(5);
    g.bench_function("hit", |b| {
        b.iter(|| {
            cache
                .lookup(black_box(&hot), &hq, 0, later)
                .map(|h| h.answer)
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| cache.lookup(black_box(&cold), &cq, 0, later).is_none())
    });
    g.bench_function("insert", |b| {
        b.iter(|| cache.insert(black_box(&hot), &hq, black_box(&hot_answer), &root, 0, now))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = cache
}
criterion_main!(benches);
