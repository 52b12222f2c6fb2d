//! The firewall's per-query cost, a domain list lookup against 10 and 1,000,000 domains (exact
//! hit, wildcard hit, miss), and the time to load a 1,000,000-line domain list file.
//!
//! `cargo bench -p dohgate-core --bench firewall`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dohgate_core::firewall::DomainList;
use dohgate_core::wire;

/// A list file of `n` domains: even lines exact names, odd lines `*.` wildcards.
fn list_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                format!("host{i}.block.example\n")
            } else {
                format!("*.zone{i}.block.example\n")
            }
        })
        .collect()
}

fn list_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("firewall/domain_list");
    for n in [10usize, 1_000_000] {
        let mut list = DomainList::new();
        list.add_file_text(&list_text(n), Path::new("bench.txt"))
            .expect("valid list");
        // Mixed case, as a 0x20-randomising client sends; a wildcard hit three labels below its
        // parent; a miss of the same depth that no suffix of matches.
        let exact = wire::name_to_wire("Host8.Block.Example").expect("name");
        let below = wire::name_to_wire("a.b.WWW.zone7.block.example").expect("name");
        let miss = wire::name_to_wire("a.b.www.elsewhere.example").expect("name");
        for (case, name) in [
            ("hit_exact", &exact),
            ("hit_wildcard", &below),
            ("miss", &miss),
        ] {
            let mut buf = [0u8; 255];
            let lower = wire::lowercase_name(name, &mut buf);
            assert_eq!(list.matches(name), case != "miss", "{case} at {n}");
            assert_eq!(list.matches_lowercase(lower), case != "miss");
            g.bench_with_input(BenchmarkId::new(case, n), name, |b, name| {
                b.iter(|| list.matches(black_box(name)))
            });
        }
    }
    g.finish();
}

fn list_load(c: &mut Criterion) {
    let text = list_text(1_000_000);
    let mut g = c.benchmark_group("firewall/domain_list_load");
    g.sample_size(10);
    g.bench_function("1000000", |b| {
        // The drop of a million-entry list is not part of the load.
        b.iter_with_large_drop(|| {
            let mut list = DomainList::new();
            list.add_file_text(black_box(&text), Path::new("bench.txt"))
                .expect("valid list");
            list
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = list_lookup, list_load
}
criterion_main!(benches);
