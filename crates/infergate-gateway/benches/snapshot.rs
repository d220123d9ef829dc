//! Building the gateway snapshot at the scale of the performance targets: 100,000 apps,
//! 100,000 APIs and 1,000,000 authorizations, and applying one change to it.
//!
//! Run: `cargo bench -p infergate-gateway --bench snapshot`

use criterion::{criterion_group, criterion_main, Criterion};
use infergate_core::model::{App, Authorization};
use infergate_core::snapshot::{AuthorizationsByApi, ConfigDelta, ConfigDump, Snapshot};
use infergate_core::{MasterKey, Secret};

mod common;

const APIS: usize = 100_000;
const APPS: usize = 100_000;
const GRANTS_PER_API: usize = 10;

fn dump(master: &MasterKey) -> ConfigDump {
    let sealed = master.encrypt(&Secret::new("0f1e2d3c4b5a69788796a5b4c3d2e1f0"));
    let (services, apis) = common::services_and_apis(APIS);
    let apps: Vec<App> = (0..APPS)
        .map(|i| App {
            id: format!("a{i:031x}"),
            project_id: "p".into(),
            name: format!("app_{i}"),
            remark: String::new(),
            app_key: format!("k{i:031x}"),
            secret_sealed: sealed.clone(),
            app_type: "APIG".into(),
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
            codes: Vec::new(),
            bounded_api_count: 0,
        })
        .collect();
    let authorizations: AuthorizationsByApi = (0..APIS * GRANTS_PER_API)
        .map(|n| Authorization {
            auth_id: format!("{n:032x}"),
            api_id: format!("{:032x}", n / GRANTS_PER_API),
            app_id: format!("a{:031x}", (n * 7919) % APPS),
            created_at: 0,
        })
        .collect();
    ConfigDump {
        revision: 1,
        services,
        apis,
        apps,
        authorizations,
        ..ConfigDump::default()
    }
}

/// Resident memory of this process, from /proc (Linux); 0 where unavailable.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn build(c: &mut Criterion) {
    let master = MasterKey::generate();
    let base = dump(&master);
    {
        let before = resident_bytes();
        let (snapshot, problems) = Snapshot::build(&base, &master);
        assert!(problems.is_empty(), "{problems:?}");
        let after = resident_bytes();
        println!(
            "snapshot of {} APIs, {} apps, {} authorizations: {} MiB resident (the kept \
             configuration it is built from: {} MiB more before it)",
            snapshot.api_count(),
            base.apps.len(),
            base.authorizations.len(),
            after.saturating_sub(before) / (1024 * 1024),
            before / (1024 * 1024),
        );
    }
    let mut group = c.benchmark_group("snapshot_100k_apis_100k_apps_1m_authorizations");
    group.sample_size(10);
    group.bench_function("full_build", |b| {
        b.iter_with_large_drop(|| Snapshot::build(&base, &master))
    });
    // One authorization added, as the store reports it: the API's authorizations now. The
    // kept configuration and the current snapshot are patched.
    let api_id = format!("{:032x}", 42);
    let mut grants: Vec<Authorization> = base.authorizations.of(&api_id).to_vec();
    grants.push(Authorization {
        auth_id: "new".into(),
        api_id: api_id.clone(),
        app_id: format!("a{:031x}", 1),
        created_at: 1,
    });
    let delta = ConfigDelta {
        revision: 2,
        authorizations_of_apis: vec![(api_id, grants)],
        ..ConfigDelta::default()
    };
    let (current, _) = Snapshot::build(&base, &master);
    let mut kept = base.clone();
    group.bench_function("one_change_applied", |b| {
        b.iter_with_large_drop(|| {
            kept.apply(&delta);
            current.patch(&delta, &kept, &master)
        })
    });
    // One app added: its secret is unsealed and the credential maps are copied.
    let app = App {
        id: "new-app".into(),
        app_key: "new-app-key".into(),
        ..base.apps[0].clone()
    };
    let delta = ConfigDelta {
        revision: 3,
        apps: vec![("new-app".into(), Some(app))],
        ..ConfigDelta::default()
    };
    group.bench_function("one_app_added", |b| {
        b.iter_with_large_drop(|| {
            kept.apply(&delta);
            current.patch(&delta, &kept, &master)
        })
    });
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
