//! Configuration shared by the benchmarks: `n` services, each with one APP API on
//! `/v1/infers/{service id}`.

use infergate_core::model::{Api, ApiMethod, AuthType, Service};

pub fn services_and_apis(n: usize) -> (Vec<Service>, Vec<Api>) {
    let services: Vec<Service> = (0..n)
        .map(|i| Service {
            id: format!("00000000-0000-4000-8000-{i:012}"),
            project_id: "p".into(),
            name: format!("svc{i}"),
            description: String::new(),
            upstreams: vec!["http://127.0.0.1:9000/v1".into()],
            upstream_weights: vec![],
            timeout_ms: 1000,
            usage_accounting: true,
            load_balancing: infergate_core::model::LoadBalancing::RoundRobin,
            tls_ca_pem: None,
            health_check: None,
            retry: None,
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
        })
        .collect();
    let apis = services
        .iter()
        .enumerate()
        .map(|(i, s)| Api {
            id: format!("{i:032x}"),
            service_id: s.id.clone(),
            project_id: "p".into(),
            name: format!("api{i}"),
            auth_type: AuthType::App,
            support_app_code: true,
            api_path: format!("/v1/infers/{}", s.id),
            api_method: ApiMethod::Any,
            remark: String::new(),
            owner: "u".into(),
            created_at: 0,
            updated_at: 0,
        })
        .collect();
    (services, apis)
}
