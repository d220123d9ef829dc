//! The per-call work of the gateway that does not touch the network: verifying an
//! SDK-HMAC-SHA256 signature (canonicalise + HMAC) and finding the API of a path.
//!
//! Run: `cargo bench -p infergate-gateway --bench hot_path`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use infergate_core::snapshot::{ConfigDump, Snapshot};
use infergate_core::MasterKey;
use infergate_sign::{PreparedVerification, ReceivedRequest, Verdict};

mod common;

const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const SECRET: &[u8] = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn verify(c: &mut Criterion) {
    // Spec §5.4 V1 (GET with an unsorted query) and V2 (POST JSON).
    let v1 = headers(&[
        ("host", "infer.example.test"),
        ("x-sdk-date", "20240102T030405Z"),
    ]);
    let v1_auth = format!("SDK-HMAC-SHA256 Access={KEY}, SignedHeaders=host;x-sdk-date, Signature=c6236d0ed81a7fc36c8c5e36fa766dcdf22f8bbe10dbe4b9435c26dad2285db7");
    let v2 = headers(&[
        ("content-type", "application/json"),
        ("host", "infer.example.test"),
        ("x-sdk-date", "20240102T030405Z"),
    ]);
    let v2_auth = format!("SDK-HMAC-SHA256 Access={KEY}, SignedHeaders=content-type;host;x-sdk-date, Signature=4dd2fc1c67b14702be341ff5f159206c918984b015056465cce9871db512114e");
    let v2_body = "{\"inputs\":\"你好\",\"max_tokens\":16}".as_bytes();

    c.bench_function("verify/v1_get_query", |b| {
        b.iter(|| {
            let prepared = PreparedVerification::prepare(
                black_box(&v1_auth),
                ReceivedRequest {
                    method: "GET",
                    raw_path: "/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/health",
                    raw_query: "limit=10&b=2&a=1&a=0&name=hello%20world&flag",
                    headers: black_box(&v1),
                    body_sha256: Some(infergate_sign::EMPTY_BODY_SHA256),
                    body_is_empty: true,
                },
            )
            .expect("prepare");
            assert_eq!(prepared.verify(SECRET), Verdict::Valid);
        })
    });
    c.bench_function("verify/v2_post_json_with_body_hash", |b| {
        b.iter(|| {
            let hash = infergate_sign::sha256_hex(black_box(v2_body));
            let prepared = PreparedVerification::prepare(
                black_box(&v2_auth),
                ReceivedRequest {
                    method: "POST",
                    raw_path: "/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b",
                    raw_query: "",
                    headers: black_box(&v2),
                    body_sha256: Some(&hash),
                    body_is_empty: false,
                },
            )
            .expect("prepare");
            assert_eq!(prepared.verify(SECRET), Verdict::Valid);
        })
    });
}

fn snapshot_with(apis: usize) -> Snapshot {
    let (services, apis) = common::services_and_apis(apis);
    Snapshot::build(
        &ConfigDump {
            services,
            apis,
            ..ConfigDump::default()
        },
        &MasterKey::generate(),
    )
    .0
}

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for size in [10_000usize, 100_000] {
        let snapshot = snapshot_with(size);
        let hit = format!(
            "/v1/infers/00000000-0000-4000-8000-{:012}/v1/chat/completions",
            size / 2
        );
        group.bench_with_input(
            BenchmarkId::new("hit_with_subpath", size),
            &hit,
            |b, path| b.iter(|| assert!(snapshot.route(black_box(path)).is_some())),
        );
        group.bench_with_input(
            BenchmarkId::new("miss", size),
            &"/v1/infers/unknown/x",
            |b, path| b.iter(|| assert!(snapshot.route(black_box(path)).is_none())),
        );
    }
    group.finish();
}

criterion_group!(benches, verify, route);
criterion_main!(benches);
