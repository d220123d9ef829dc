//! Limits that hold across nodes. Each count of a window lives in Redis; a node admits a
//! call only with permits it already holds (one per call, or one per token a call
//! reserves), and takes permits from the window's count in batches: as many as it used
//! since its last batch (at least a few, and at least what the call lacks), never more than
//! a share of what the window has left (so batches shrink as the budget runs out). The sum
//! admitted over all nodes therefore never exceeds a limit, and a limit goes unused only
//! by the permits nodes still hold when the window ends. A batch that would take from a
//! count with less left than the call lacks takes nothing from the others.
//!
//! A model call's unused reserved tokens come back to the node's permits; tokens it spent
//! beyond its reservation are taken from them, and what they lack is added to the count in
//! Redis.
//!
//! Without Redis a node keeps counting locally, each limit divided by the nodes that were
//! last seen alive (rounded down), until the end of the window in which Redis went away
//! (what each node admitted meanwhile is known to it alone); the next window is counted in
//! Redis again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infergate_core::snapshot::ThrottleRule;
use infergate_core::throttle::window_start;
use redis::aio::MultiplexedConnection;
use smallvec::SmallVec;

use super::{Applicable, CounterKey, Dimension, RateLimitFields, Refusal};

/// How long a Redis answer may take before the node counts on its own.
const REDIS_TIMEOUT: Duration = Duration::from_millis(300);
/// How often a node says it is alive (and checks Redis when it was away).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard of for this long is no longer counted among the live ones.
const NODE_TTL_MS: i64 = 5_000;
/// Bounds of one batch of permits.
const MIN_BATCH: u64 = 4;
const MAX_BATCH: u64 = 4_096;

/// Takes permits for several counts at once: all or, when one has less left than the call
/// needs of it, none.
/// ARGV: key expiry (ms), live nodes, then per key its limit, the batch wanted and the
/// permits the call needs at least. Returns per key the permits granted and what is left.
const TAKE: &str = r"
local ttl = tonumber(ARGV[1])
local nodes = tonumber(ARGV[2])
local used = {}
local out = {}
local short = false
for i = 1, #KEYS do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tonumber(ARGV[3 * i]) - used[i] < tonumber(ARGV[3 * i + 2]) then short = true end
end
for i = 1, #KEYS do
  local left = math.max(tonumber(ARGV[3 * i]) - used[i], 0)
  local need = tonumber(ARGV[3 * i + 2])
  local grant = 0
  if not short then
    local share = math.ceil(left / (2 * nodes))
    grant = math.min(left, math.max(need, math.min(tonumber(ARGV[3 * i + 1]), share)))
    redis.call('INCRBY', KEYS[i], grant)
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  out[2 * i - 1] = grant
  out[2 * i] = left - grant
end
return out
";

/// What this node holds of one count in one window.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    window: i64,
    /// Permits taken from Redis and not used yet.
    permits: u64,
    /// Permits this node used in the window.
    admitted: u64,
    /// Permits used since the last batch: the next batch's size.
    since_batch: u64,
    /// What Redis said the window had left after the last batch.
    left: u64,
    /// A batch was asked for in this window (so `left` is known).
    fetched: bool,
}

/// What [`ClusterLimits::try_admit`] decided.
enum Decision {
    Admitted(RateLimitFields),
    Refused(Box<Refusal>),
    /// Some count needs permits from Redis first.
    Fetch,
}

/// Throttling counts shared by every node through Redis.
pub struct ClusterLimits {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    prefix: String,
    node: String,
    up: AtomicBool,
    /// When Redis was last found away (ms since the epoch): a window holding that time is
    /// counted on this node to its end.
    away_at: AtomicI64,
    nodes: AtomicUsize,
    /// The live nodes when Redis went away: the local shares divide the limits by these
    /// (nodes come back into the count one heartbeat at a time when Redis returns).
    nodes_when_away: AtomicUsize,
    held: Mutex<HashMap<CounterKey, Held, foldhash::fast::RandomState>>,
    /// One batch request at a time: calls that wait for permits share it.
    fetching: tokio::sync::Mutex<()>,
    script: redis::Script,
    metrics: Option<ClusterMetrics>,
}

/// The metrics of the shared counts.
#[derive(Clone)]
pub struct ClusterMetrics {
    pub permits: prometheus::IntCounter,
    pub redis_up: prometheus::IntGauge,
}

impl ClusterMetrics {
    pub fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let permits = prometheus::IntCounter::new(
            "infergate_gateway_throttle_permits_taken_total",
            "Permits this node took from the shared counts in Redis.",
        )?;
        let redis_up = prometheus::IntGauge::new(
            "infergate_gateway_throttle_redis_up",
            "1 while Redis holds the throttling counts; 0 while this node counts on its own.",
        )?;
        registry.register(Box::new(permits.clone()))?;
        registry.register(Box::new(redis_up.clone()))?;
        Ok(Self { permits, redis_up })
    }
}

/// What one of `nodes` may admit of `limit` in a window while Redis is away: rounded down,
/// so that the shares of all nodes add up to no more than the limit.
fn local_share(limit: u64, nodes: u64) -> u64 {
    limit / nodes.max(1)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ClusterLimits {
    /// Counts in the Redis of `url` under keys starting with `prefix`; connects in the
    /// background (a node whose Redis is down starts counting on its own).
    pub fn start(
        url: &str,
        prefix: &str,
        metrics: Option<ClusterMetrics>,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?;
        let limits = Arc::new(Self {
            client,
            conn: Mutex::new(None),
            prefix: prefix.to_owned(),
            node: infergate_core::ids::random_hex(8),
            up: AtomicBool::new(false),
            away_at: AtomicI64::new(0),
            nodes: AtomicUsize::new(1),
            nodes_when_away: AtomicUsize::new(1),
            held: Mutex::new(HashMap::default()),
            fetching: tokio::sync::Mutex::new(()),
            script: redis::Script::new(TAKE),
            metrics,
        });
        let beating = Arc::downgrade(&limits);
        tokio::spawn(async move {
            while let Some(limits) = beating.upgrade() {
                limits.heartbeat().await;
                drop(limits);
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        Ok(limits)
    }

    /// Whether Redis holds the counts now (else this node counts on its own).
    pub fn redis_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Live nodes, as last seen in Redis.
    pub fn live_nodes(&self) -> usize {
        self.nodes.load(Ordering::Relaxed).max(1)
    }

    fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was && !up {
            self.nodes_when_away
                .store(self.live_nodes(), Ordering::Relaxed);
        }
        if was != up {
            if up {
                tracing::info!("Redis reached: throttling counts are shared again");
            } else {
                tracing::warn!(
                    nodes = self.live_nodes(),
                    "Redis unreachable: each limit is counted here, divided by the live nodes"
                );
            }
        }
        if let Some(m) = &self.metrics {
            m.redis_up.set(i64::from(up));
        }
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let held = self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if held.is_some() {
            return held;
        }
        let connecting = self.client.get_multiplexed_async_connection();
        let conn = tokio::time::timeout(REDIS_TIMEOUT, connecting)
            .await
            .ok()?
            .ok()?;
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Some(conn)
    }

    fn lost(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.away_at.store(now_ms(), Ordering::Relaxed);
        self.set_up(false);
    }

    /// Says this node is alive and counts the live ones.
    async fn heartbeat(&self) {
        let Some(mut conn) = self.connection().await else {
            self.lost();
            return;
        };
        let key = format!("{}:nodes", self.prefix);
        let now = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(&key)
            .arg(now)
            .arg(&self.node)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now - NODE_TTL_MS)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(NODE_TTL_MS * 2)
            .ignore()
            .cmd("ZCARD")
            .arg(&key);
        let counted: Result<Result<(usize,), _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn)).await;
        match counted {
            Ok(Ok((nodes,))) => {
                self.nodes.store(nodes.max(1), Ordering::Relaxed);
                self.set_up(true);
            }
            _ => self.lost(),
        }
    }

    fn redis_key(&self, key: &CounterKey, window: i64) -> String {
        format!(
            "{}:t:{}:{}:{}:{}:{}",
            self.prefix,
            key.throttle,
            key.api.as_deref().unwrap_or("*"),
            key.dimension.as_str(),
            key.subject,
            window
        )
    }

    /// Admits with held permits (or, while Redis is away, a local share); says when a
    /// count needs a batch first.
    fn try_admit(&self, rule: &ThrottleRule, applicable: &Applicable, now: i64) -> Decision {
        // Redis counts this window only if it was there all along: what nodes admitted
        // without it is known to each alone.
        let up = self.redis_up() && self.away_at.load(Ordering::Relaxed) < applicable.window;
        let nodes = if up {
            self.live_nodes()
        } else {
            self.nodes_when_away.load(Ordering::Relaxed).max(1)
        } as u64;
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut states: SmallVec<[Held; 4]> = SmallVec::new();
        let mut refused = None;
        let mut fetch = false;
        for (key, limit) in &applicable.checks {
            let h = held.entry(key.clone()).or_default();
            if h.window != applicable.window {
                *h = Held {
                    window: applicable.window,
                    ..Held::default()
                };
            }
            let share = local_share(*limit, nodes);
            let cost = applicable.cost;
            let ok = if h.permits >= cost {
                true
            } else if !up {
                h.admitted.saturating_add(cost) <= share
            } else if h.fetched && h.permits.saturating_add(h.left) < cost {
                // Not even all that was left at the last batch would do.
                false
            } else {
                fetch = true;
                true
            };
            if !ok && refused.is_none() {
                refused = Some((key.dimension, *limit));
            }
            states.push(*h);
        }
        let remaining = |h: &Held, limit: u64| {
            if up {
                h.left + h.permits
            } else {
                local_share(limit, nodes).saturating_sub(h.admitted)
            }
        };
        let counts = |states: &[Held]| -> SmallVec<[u64; 4]> {
            applicable
                .checks
                .iter()
                .zip(states)
                .map(|((_, limit), h)| limit.saturating_sub(remaining(h, *limit)))
                .collect()
        };
        if let Some(over) = refused {
            let counts = counts(&states);
            return Decision::Refused(Box::new(applicable.refusal(rule, over, &counts, now)));
        }
        if fetch {
            return Decision::Fetch;
        }
        for ((key, _), state) in applicable.checks.iter().zip(states.iter_mut()) {
            if let Some(h) = held.get_mut(key) {
                h.permits = h.permits.saturating_sub(applicable.cost);
                h.admitted = h.admitted.saturating_add(applicable.cost);
                h.since_batch = h.since_batch.saturating_add(applicable.cost);
                *state = *h;
            }
        }
        Decision::Admitted(applicable.fields(&counts(&states), now))
    }

    /// Takes a batch for every count of `applicable` that holds fewer permits than the call
    /// costs.
    async fn fetch(&self, applicable: &Applicable, now: i64) {
        let _one_at_a_time = self.fetching.lock().await;
        let cost = applicable.cost;
        let wanted: SmallVec<[(CounterKey, u64, u64, u64); 4]> = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            applicable
                .checks
                .iter()
                .filter_map(|(key, limit)| {
                    let h = held.get(key).copied().unwrap_or_default();
                    let current = h.window == applicable.window;
                    let permits = if current { h.permits } else { 0 };
                    let short = current && h.fetched && permits.saturating_add(h.left) < cost;
                    if permits >= cost || short {
                        return None;
                    }
                    let need = cost - permits;
                    let most = MAX_BATCH.max(need.saturating_mul(16));
                    let batch = h.since_batch.saturating_mul(2).clamp(MIN_BATCH, most);
                    Some((key.clone(), *limit, batch, need))
                })
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        let Some(mut conn) = self.connection().await else {
            self.lost();
            return;
        };
        let window_end = applicable.window + applicable.window_ms as i64;
        let ttl = (window_end - now).max(0) + 5_000;
        let mut invocation = self.script.prepare_invoke();
        for (key, ..) in &wanted {
            invocation.key(self.redis_key(key, applicable.window));
        }
        invocation.arg(ttl).arg(self.live_nodes());
        for (_, limit, batch, need) in &wanted {
            invocation.arg(*limit).arg(*batch).arg(*need);
        }
        let answer: Result<Result<Vec<i64>, _>, _> =
            tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut conn)).await;
        let granted = match answer {
            Ok(Ok(granted)) if granted.len() == wanted.len() * 2 => granted,
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                self.lost();
                return;
            }
        };
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = 0u64;
        for (i, (key, ..)) in wanted.iter().enumerate() {
            let grant = granted[2 * i].max(0) as u64;
            let left = granted[2 * i + 1].max(0) as u64;
            let h = held.entry(key.clone()).or_default();
            if h.window != applicable.window {
                *h = Held {
                    window: applicable.window,
                    ..Held::default()
                };
            }
            h.permits += grant;
            h.left = left;
            h.since_batch = 0;
            h.fetched = true;
            taken += grant;
        }
        if let Some(m) = &self.metrics {
            m.permits.inc_by(taken);
        }
    }

    /// Replaces what an admitted call reserved with what it spent: tokens it did not use
    /// come back to this node's permits; tokens it used beyond its reservation are taken
    /// from them, and what they lack is added to the count in Redis. Once the call's window
    /// has ended, what it used beyond its reservation counts in the window of `now`.
    pub(crate) fn settle(
        self: &Arc<Self>,
        applicable: &Applicable,
        reserved: u64,
        spent: u64,
        now: i64,
    ) {
        let mut owed: SmallVec<[(String, u64); 4]> = SmallVec::new();
        let window = window_start(now, applicable.window_ms).max(applicable.window);
        let expires = window + applicable.window_ms as i64 + 5_000;
        let moved_on = window != applicable.window;
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            for (key, _) in &applicable.checks {
                if moved_on {
                    // The window ended: nothing to give back, the overspend to the new one.
                    if spent > reserved && self.redis_up() {
                        owed.push((self.redis_key(key, window), spent - reserved));
                    }
                    continue;
                }
                let Some(h) = held.get_mut(key) else { continue };
                if h.window != applicable.window {
                    continue;
                }
                if spent <= reserved {
                    let back = reserved - spent;
                    h.permits = h.permits.saturating_add(back);
                    h.admitted = h.admitted.saturating_sub(back);
                } else {
                    let more = spent - reserved;
                    let from_permits = more.min(h.permits);
                    h.permits -= from_permits;
                    h.admitted = h.admitted.saturating_add(more);
                    h.left = h.left.saturating_sub(more - from_permits);
                    if more > from_permits && self.redis_up() {
                        owed.push((self.redis_key(key, h.window), more - from_permits));
                    }
                }
            }
        }
        if owed.is_empty() {
            return;
        }
        let limits = self.clone();
        tokio::spawn(async move {
            let Some(mut conn) = limits.connection().await else {
                limits.lost();
                return;
            };
            let mut pipe = redis::pipe();
            for (key, tokens) in &owed {
                pipe.cmd("INCRBY").arg(key).arg(*tokens).ignore();
                // Like a batch's key: gone a little after its window ends.
                pipe.cmd("PEXPIREAT").arg(key).arg(expires).ignore();
            }
            let added: Result<Result<(), _>, _> =
                tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async(&mut conn)).await;
            if !matches!(added, Ok(Ok(()))) {
                limits.lost();
            }
        });
    }

    /// Admits the call or refuses it, waiting for Redis only when a count needs a batch.
    pub(crate) async fn admit(
        &self,
        rule: &ThrottleRule,
        applicable: &Applicable,
        now: i64,
    ) -> Result<RateLimitFields, Box<Refusal>> {
        for _ in 0..16 {
            match self.try_admit(rule, applicable, now) {
                Decision::Admitted(fields) => return Ok(fields),
                Decision::Refused(over) => return Err(over),
                Decision::Fetch => self.fetch(applicable, now).await,
            }
        }
        // Every batch went to other calls first: the counts are all but spent.
        match self.try_admit(rule, applicable, now) {
            Decision::Admitted(fields) => Ok(fields),
            Decision::Refused(over) => Err(over),
            Decision::Fetch => Err(Box::new(applicable.refusal(
                rule,
                (Dimension::Api, rule.api_call_limits),
                &[],
                now,
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Caller;
    use infergate_core::throttle::{ThrottleType, ThrottleUnit, TimeUnit};

    fn tokens_per_hour(limit: u64) -> ThrottleRule {
        ThrottleRule {
            throttle_id: infergate_core::ids::random_hex(8).into(),
            name: "tpm".into(),
            kind: ThrottleType::PerApi,
            time_interval: 1,
            time_unit: TimeUnit::Hour,
            api_call_limits: limit,
            user_call_limits: None,
            app_call_limits: None,
            ip_call_limits: None,
            unit: ThrottleUnit::Token,
            default_max_tokens: 16,
            special_apps: Default::default(),
            special_users: Default::default(),
        }
    }

    async fn redis_count(key: &str) -> i64 {
        let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379");
        redis::cmd("GET")
            .arg(key)
            .query_async::<Option<i64>>(&mut conn)
            .await
            .expect("GET")
            .unwrap_or(0)
    }

    /// The count at `key` once it is `want` (settlements write in the background), or
    /// after a second, whatever it is then.
    async fn redis_count_when(key: &str, want: i64) -> i64 {
        let mut counted = 0;
        for _ in 0..50 {
            counted = redis_count(key).await;
            if counted == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        counted
    }

    /// Without Redis each of three nodes admits a third of a limit, rounded down: three
    /// nodes together never admit more than the limit (1,000 is not a multiple of 3).
    #[tokio::test]
    async fn without_redis_a_node_admits_its_share_rounded_down() {
        // Nothing listens on port 1 of loopback: the node counts on its own from the start.
        let limits = ClusterLimits::start("redis://127.0.0.1:1", "infergate-test-away", None)
            .expect("start");
        limits.nodes_when_away.store(3, Ordering::Relaxed);
        let rule = tokens_per_hour(1_000);
        let now = now_ms();
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let call = Applicable::of(&rule, &Arc::from("api"), &Caller::Anonymous, ip, now);
        let mut admitted = 0;
        while limits.admit(&rule, &call, now).await.is_ok() {
            admitted += 1;
            assert!(admitted <= 1_000, "no end to what one node admits");
        }
        assert!(!limits.redis_up());
        assert_eq!(admitted, 333);
    }

    /// Tokens spent beyond a reservation are added to the count in Redis (so every node
    /// refuses what no longer fits); tokens left unspent come back to the node's permits.
    #[tokio::test]
    async fn settling_moves_the_difference_between_reserved_and_spent() {
        let prefix = format!("infergate-test-{}", infergate_core::ids::random_hex(6));
        let limits = ClusterLimits::start("redis://127.0.0.1:6379", &prefix, None).expect("start");
        for _ in 0..50 {
            if limits.redis_up() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(limits.redis_up(), "Redis on 127.0.0.1:6379");
        let rule = tokens_per_hour(1_000);
        let now = now_ms();
        let call = |cost: u64| {
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            let mut applicable =
                Applicable::of(&rule, &Arc::from("api"), &Caller::Anonymous, ip, now);
            applicable.cost = cost;
            applicable
        };
        let key = limits.redis_key(&call(1).checks[0].0, call(1).window);

        let first = call(100);
        assert!(limits.admit(&rule, &first, now).await.is_ok());
        assert_eq!(
            redis_count(&key).await,
            100,
            "one reservation's permits taken"
        );
        // It spent 900: 800 more are owed to Redis.
        limits.settle(&first, 100, 900, now);
        assert_eq!(redis_count_when(&key, 900).await, 900);
        let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(ttl > 0, "the window's key keeps its expiry: {ttl}");
        // 100 are left: a call reserving 200 is refused, one reserving 100 fits.
        let refused = limits
            .admit(&rule, &call(200), now)
            .await
            .expect_err("over");
        assert_eq!(
            (refused.unit, refused.cost, refused.limit),
            (ThrottleUnit::Token, 200, 1_000)
        );
        let last = call(100);
        assert!(limits.admit(&rule, &last, now).await.is_ok());
        assert_eq!(redis_count(&key).await, 1_000);
        // It spent 40: 60 come back to this node, which admits a call reserving 60 from
        // them without Redis.
        limits.settle(&last, 100, 40, now);
        assert!(limits.admit(&rule, &call(60), now).await.is_ok());
        assert!(limits.admit(&rule, &call(1), now).await.is_err());
        assert_eq!(redis_count(&key).await, 1_000);
        // Settled after its window ended, a call's overspend counts in the window of then.
        let hour = 3_600_000;
        let next = limits.redis_key(&call(1).checks[0].0, call(1).window + hour);
        limits.settle(&call(50), 50, 80, now + hour);
        assert_eq!(
            redis_count_when(&next, 30).await,
            30,
            "the next window holds the overspend"
        );
        assert_eq!(redis_count(&key).await, 1_000);
    }
}
