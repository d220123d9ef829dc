//! Active health checks: each node probes the upstreams of the services that ask for it
//! (`GET {base path}{path}` every interval, a new connection each time, TLS for `https://`)
//! and takes an upstream out of rotation after `unhealthy_threshold` failed probes in a
//! row, back after `healthy_threshold` passed ones. Passive ejection stays beside it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infergate_core::model::HealthCheck;
use infergate_core::snapshot::{ServiceRoute, Upstream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::upstreams::pool::ConnectError;
use crate::Gateway;

/// How often the prober looks for probes that are due.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Probed {
    /// The labels of its gauge: service and upstream.
    labels: (String, Arc<str>),
    healthy: bool,
    /// Probes in a row whose result differs from `healthy`.
    streak: u32,
    next_at: Instant,
    probing: bool,
}

/// What the probes found, by health key (service and upstream).
#[derive(Default)]
pub(crate) struct HealthBook {
    states: Mutex<HashMap<Arc<str>, Probed>>,
    /// Whether an upstream is out of rotation: calls skip the lock while none is.
    any_down: AtomicBool,
}

impl HealthBook {
    /// Whether any upstream is out of rotation.
    pub(crate) fn any_down(&self) -> bool {
        self.any_down.load(Ordering::Relaxed)
    }

    /// Whether the upstream of `key` failed its checks (and has not passed again).
    pub(crate) fn is_down(&self, key: &str) -> bool {
        if !self.any_down() {
            return false;
        }
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.get(key).is_some_and(|p| !p.healthy)
    }

    /// Upstreams probed, and how many of them are out of rotation.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let down = states.values().filter(|p| !p.healthy).count();
        (states.len(), down)
    }

    /// Ends a probe that tells nothing of the upstream (this node ran out of a resource):
    /// its state stays as it was.
    fn skip(&self, key: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = states.get_mut(key) {
            state.probing = false;
        }
    }

    /// Takes in one probe's result; whether the upstream is in rotation now (`None` once
    /// its service changed or went away).
    fn record(&self, key: &str, check: &HealthCheck, passed: bool, why: &str) -> Option<bool> {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let state = states.get_mut(key)?;
        state.probing = false;
        if passed == state.healthy {
            state.streak = 0;
        } else {
            state.streak += 1;
            let needed = if state.healthy {
                check.unhealthy_threshold
            } else {
                check.healthy_threshold
            };
            if state.streak >= needed {
                state.healthy = passed;
                state.streak = 0;
                if passed {
                    tracing::info!(upstream = %key, "upstream passed its health checks: back in rotation");
                } else {
                    tracing::warn!(upstream = %key, reason = %why, "upstream failed its health checks: out of rotation");
                }
            }
        }
        let healthy = state.healthy;
        let any_down = states.values().any(|p| !p.healthy);
        self.any_down.store(any_down, Ordering::Relaxed);
        Some(healthy)
    }
}

impl Gateway {
    /// Upstreams under active health checks on this node, and how many of them are out of
    /// rotation.
    pub fn upstream_health(&self) -> (usize, usize) {
        self.upstreams.health.counts()
    }

    /// Probes the upstreams of health-checked services until the process ends.
    pub fn start_health_checks(self: &Arc<Self>) {
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                gateway.start_due_probes();
            }
        });
    }

    fn start_due_probes(self: &Arc<Self>) {
        let snapshot = self.snapshots.load();
        let services = snapshot.health_checked();
        let book = &self.upstreams.health;
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut states = book.states.lock().unwrap_or_else(|e| e.into_inner());
            let mut seen = HashSet::new();
            for service in &services {
                let Some(check) = &service.health_check else {
                    continue;
                };
                for (index, upstream) in service.upstreams.iter().enumerate() {
                    let key = service.own_key(index).clone();
                    seen.insert(key.clone());
                    let state = states.entry(key.clone()).or_insert(Probed {
                        labels: (service.id.clone(), upstream.authority.clone()),
                        healthy: true,
                        streak: 0,
                        next_at: now,
                        probing: false,
                    });
                    if state.probing || state.next_at > now {
                        continue;
                    }
                    state.probing = true;
                    state.next_at = now + Duration::from_millis(check.interval_ms);
                    due.push((service.clone(), upstream.clone(), check.clone(), key));
                }
            }
            // Services changed or gone take their states (and gauges) with them.
            let metrics = self.observers.metrics.as_ref();
            states.retain(|key, state| {
                let keep = seen.contains(key);
                if let (false, Some(metrics)) = (keep, metrics) {
                    let (service, upstream) = &state.labels;
                    let _ = metrics
                        .upstream_healthy
                        .remove_label_values(&[service.as_str(), &**upstream]);
                }
                keep
            });
            let any_down = states.values().any(|p| !p.healthy);
            book.any_down.store(any_down, Ordering::Relaxed);
        }
        for (service, upstream, check, key) in due {
            let gateway = self.clone();
            tokio::spawn(async move {
                let timeout = Duration::from_millis(check.timeout_ms);
                let probed =
                    tokio::time::timeout(timeout, gateway.probe(&service, &upstream, &check)).await;
                let (passed, why) = match probed {
                    Ok(Ok(status)) if check.expected_statuses.contains(&status) => {
                        (true, String::new())
                    }
                    Ok(Ok(status)) => (false, format!("answered {status}")),
                    Ok(Err(err)) if err.local.is_some() => {
                        // This node's shortage says nothing of the upstream.
                        tracing::warn!(upstream = %upstream.authority, error = %err.why, "a health check could not connect for want of a local resource; the upstream's state is unchanged");
                        gateway.upstreams.health.skip(&key);
                        return;
                    }
                    Ok(Err(err)) => (false, err.why),
                    Err(_) => (false, format!("no answer within {} ms", check.timeout_ms)),
                };
                let Some(healthy) = gateway.upstreams.health.record(&key, &check, passed, &why)
                else {
                    return;
                };
                if let Some(metrics) = &gateway.observers.metrics {
                    metrics
                        .upstream_healthy
                        .with_label_values(&[service.id.as_str(), &*upstream.authority])
                        .set(i64::from(healthy));
                }
            });
        }
    }

    /// One probe: the status of `GET {base path}{path}` on a new connection.
    async fn probe(
        &self,
        service: &ServiceRoute,
        upstream: &Upstream,
        check: &HealthCheck,
    ) -> Result<u16, ConnectError> {
        let request = format!(
            "GET {}{} HTTP/1.1\r\nhost: {}\r\nuser-agent: infergate-health-check\r\nconnection: close\r\n\r\n",
            upstream.base_path, check.path, upstream.authority
        );
        if upstream.scheme != "https" {
            let tcp = self
                .general_pool
                .connect_tcp(&upstream.authority, 80)
                .await?;
            return Ok(exchange(tcp, request.as_bytes()).await?);
        }
        let tls = self
            .upstream_tls
            .connect_upstream(
                &self.general_pool,
                &upstream.authority,
                service.tls_ca_pem.as_ref(),
                crate::upstreams::tls::Alpn::Http11,
            )
            .await?;
        Ok(exchange(tls, request.as_bytes()).await?)
    }
}

/// Writes `request` and reads the status code of the answer's first line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    request: &[u8],
) -> Result<u16, String> {
    io.write_all(request)
        .await
        .map_err(|e| format!("sending the probe: {e}"))?;
    io.flush()
        .await
        .map_err(|e| format!("sending the probe: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = io
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let version = parts.next().unwrap_or(&[]);
    let status = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.trim().parse::<u16>().ok());
    match status {
        Some(status) if version.starts_with(b"HTTP/1.") => Ok(status),
        _ => Err("the answer is not HTTP/1.x".into()),
    }
}
