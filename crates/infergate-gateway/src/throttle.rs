//! Throttling at call time: every limit of the policies bound to an API (per API or
//! shared by its APIs, per user, app and source IP) counts in fixed windows aligned to the
//! epoch. A REQUEST policy counts calls; a TOKEN policy counts the tokens of model calls,
//! each call reserving what it may spend at admission and settling with what its answer
//! reports when it ends. A call is admitted only when its cost fits under every applicable
//! limit, and then counted in all of them at once, so a refused call consumes nothing and
//! one node never admits past a limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use infergate_core::snapshot::ThrottleRule;
use infergate_core::throttle::{window_start, ThrottleType, ThrottleUnit};
use smallvec::SmallVec;

use crate::authn::Caller;

mod cluster;

pub use cluster::{ClusterLimits, ClusterMetrics};

/// What a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Api,
    User,
    App,
    Ip,
}

impl Dimension {
    /// The word in answers, metrics and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Api => "api",
            Dimension::User => "user",
            Dimension::App => "app",
            Dimension::Ip => "ip",
        }
    }

    /// The access log's word for a call this limit of `unit` refused.
    pub fn refusal(self, unit: ThrottleUnit) -> &'static str {
        match (unit, self) {
            (ThrottleUnit::Request, Dimension::Api) => "throttled:api",
            (ThrottleUnit::Request, Dimension::User) => "throttled:user",
            (ThrottleUnit::Request, Dimension::App) => "throttled:app",
            (ThrottleUnit::Request, Dimension::Ip) => "throttled:ip",
            (ThrottleUnit::Token, Dimension::Api) => "throttled:api_tokens",
            (ThrottleUnit::Token, Dimension::User) => "throttled:user_tokens",
            (ThrottleUnit::Token, Dimension::App) => "throttled:app_tokens",
            (ThrottleUnit::Token, Dimension::Ip) => "throttled:ip_tokens",
        }
    }

    /// The name of this limit's item in the rate-limit fields.
    fn item(self, unit: ThrottleUnit) -> &'static str {
        match unit {
            ThrottleUnit::Request => self.as_str(),
            ThrottleUnit::Token => &self.refusal(unit)["throttled:".len()..],
        }
    }
}

/// An id shared with the snapshot: equal when it is the same allocation (every call of a
/// snapshot's API brings the same one) without comparing its bytes, and otherwise by them.
#[derive(Debug, Clone, Eq)]
pub(crate) struct Name(Arc<str>);

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One count: a policy's, for one API (type 1) or all its APIs (type 2), of one dimension
/// and one subject (user, app or IP; none for the API count).
#[derive(Debug, Clone, Eq)]
pub(crate) struct CounterKey {
    pub throttle: Name,
    pub api: Option<Name>,
    pub dimension: Dimension,
    pub subject: Box<str>,
}

impl std::hash::Hash for CounterKey {
    /// Over the same parts as equality.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.throttle.hash(state);
        self.api.hash(state);
        self.dimension.hash(state);
        self.subject.hash(state);
    }
}

impl PartialEq for CounterKey {
    /// The cheap parts first: most keys of a shard differ in their dimension or subject.
    fn eq(&self, other: &Self) -> bool {
        self.dimension == other.dimension
            && self.subject.len() == other.subject.len()
            && (self.subject.is_empty() || self.subject == other.subject)
            && self.throttle == other.throttle
            && self.api == other.api
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    window: i64,
    /// When the window ends: the slot counts nothing after.
    ends: i64,
    count: u64,
}

/// The `RateLimit-Policy` and `RateLimit` fields of a throttled API's responses
/// (draft-ietf-httpapi-ratelimit-headers): one item per limit that applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitFields {
    pub policy: String,
    pub state: String,
}

impl RateLimitFields {
    /// These items followed by `other`'s.
    pub(crate) fn and(mut self, other: &RateLimitFields) -> Self {
        for (mine, theirs) in [
            (&mut self.policy, &other.policy),
            (&mut self.state, &other.state),
        ] {
            if !theirs.is_empty() {
                if !mine.is_empty() {
                    mine.push_str(", ");
                }
                mine.push_str(theirs);
            }
        }
        self
    }
}

/// A call over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub dimension: Dimension,
    /// What the limit counts.
    pub unit: ThrottleUnit,
    pub limit: u64,
    /// What the call would have counted (1 call, or the tokens it reserves).
    pub cost: u64,
    pub time_interval: u64,
    /// The unit's word (`minute`).
    pub time_unit: &'static str,
    /// Seconds until the window ends.
    pub retry_after: u64,
    pub policy_id: Arc<str>,
    pub fields: RateLimitFields,
}

/// The limits that apply to one call.
pub(crate) struct Applicable {
    checks: SmallVec<[(CounterKey, u64); 4]>,
    window: i64,
    window_ms: u64,
    unit: ThrottleUnit,
    /// What the call counts in each limit: 1 call, or the tokens it reserves.
    pub(crate) cost: u64,
}

impl Applicable {
    /// The counts `rule` keeps for a call of `api_id` by `caller` from `ip`.
    pub(crate) fn of(
        rule: &ThrottleRule,
        api_id: &Arc<str>,
        caller: &Caller,
        ip: IpAddr,
        now_ms: i64,
    ) -> Self {
        let api = match rule.kind {
            ThrottleType::PerApi => Some(Name(api_id.clone())),
            ThrottleType::Shared => None,
        };
        let key = |dimension, subject: &str| CounterKey {
            throttle: Name(rule.throttle_id.clone()),
            api: api.clone(),
            dimension,
            subject: subject.into(),
        };
        let mut checks = SmallVec::new();
        checks.push((key(Dimension::Api, ""), rule.api_call_limits));
        match caller {
            Caller::User { user_id } => {
                if let Some(limit) = rule.user_limit(user_id) {
                    checks.push((key(Dimension::User, user_id), limit));
                }
            }
            Caller::App { app_id } => {
                if let Some(limit) = rule.app_limit(app_id) {
                    checks.push((key(Dimension::App, app_id), limit));
                }
            }
            Caller::Anonymous => {}
        }
        if let Some(limit) = rule.ip_call_limits {
            checks.push((key(Dimension::Ip, &ip.to_string()), limit));
        }
        let window_ms = rule.window_ms();
        Self {
            checks,
            window: window_start(now_ms, window_ms),
            window_ms,
            unit: rule.unit,
            cost: 1,
        }
    }

    /// Counts in the windows holding `now_ms` instead.
    pub(crate) fn move_to(&mut self, now_ms: i64) {
        self.window = window_start(now_ms, self.window_ms);
    }

    /// The lowest of the limits these counts are held to.
    pub(crate) fn least_limit(&self) -> u64 {
        self.checks
            .iter()
            .map(|(_, limit)| *limit)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// The policy these counts belong to.
    fn throttle(&self) -> &str {
        self.checks.first().map_or("", |(key, _)| &key.throttle)
    }

    /// Seconds from `now_ms` to the end of the window (at least 1).
    fn retry_after(&self, now_ms: i64) -> u64 {
        let end = self.window.saturating_add(self.window_ms as i64);
        (end.saturating_sub(now_ms).max(0) as u64)
            .div_ceil(1000)
            .max(1)
    }

    /// The refusal of a call over `over` (a dimension and its limit), given the counts of
    /// every limit as they stand.
    fn refusal(
        &self,
        rule: &ThrottleRule,
        over: (Dimension, u64),
        counts: &[u64],
        now_ms: i64,
    ) -> Refusal {
        Refusal {
            dimension: over.0,
            unit: self.unit,
            limit: over.1,
            cost: self.cost,
            time_interval: rule.time_interval,
            time_unit: rule.time_unit.word(),
            retry_after: self.retry_after(now_ms),
            policy_id: rule.throttle_id.clone(),
            fields: self.fields(counts, now_ms),
        }
    }

    /// The header fields, given the count after this call of each limit.
    fn fields(&self, counts: &[u64], now_ms: i64) -> RateLimitFields {
        use std::fmt::Write;
        let window_s = self.window_ms.div_ceil(1000).max(1);
        let reset = self.retry_after(now_ms);
        let mut policy = String::with_capacity(32 * self.checks.len());
        let mut state = String::with_capacity(32 * self.checks.len());
        for ((key, limit), count) in self.checks.iter().zip(counts) {
            if !policy.is_empty() {
                policy.push_str(", ");
                state.push_str(", ");
            }
            let name = key.dimension.item(self.unit);
            // Writing to a String cannot fail.
            let _ = write!(policy, "\"{name}\";q={limit};w={window_s}");
            let _ = write!(
                state,
                "\"{name}\";r={};t={reset}",
                limit.saturating_sub(*count)
            );
        }
        RateLimitFields { policy, state }
    }
}

/// The counts of one node, sharded by policy: one call's counts share a lock.
pub(crate) struct Counters {
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    slots: HashMap<CounterKey, Slot, foldhash::fast::RandomState>,
    /// Size at which windows that ended are swept out.
    sweep_at: usize,
}

const SHARDS: usize = 16;
const MIN_SWEEP: usize = 1024;

impl Default for Counters {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }
}

impl Counters {
    fn shard(&self, throttle: &str) -> &Mutex<Shard> {
        let hash = throttle
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[hash % SHARDS]
    }

    /// Admits the call if its cost fits under every limit, counting it in all of them;
    /// refuses it (counting nothing) otherwise.
    pub(crate) fn admit(
        &self,
        rule: &ThrottleRule,
        applicable: &Applicable,
        now_ms: i64,
    ) -> Result<RateLimitFields, Refusal> {
        let mut shard = self
            .shard(applicable.throttle())
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // A count already in a later window (another thread's clock ran ahead) is not
        // set back: the call counts in that window.
        let current = |slot: Option<&Slot>| match slot {
            Some(s) if s.window >= applicable.window => s.count,
            _ => 0,
        };
        let mut counts: SmallVec<[u64; 4]> = SmallVec::new();
        for (key, limit) in &applicable.checks {
            let count = current(shard.slots.get(key));
            if count.saturating_add(applicable.cost) > *limit {
                counts.push(count);
                // Report every limit as it stands; the refused one first in the message.
                for (key, _) in applicable.checks.iter().skip(counts.len()) {
                    counts.push(current(shard.slots.get(key)));
                }
                return Err(applicable.refusal(rule, (key.dimension, *limit), &counts, now_ms));
            }
            counts.push(count + applicable.cost);
        }
        let slot = |count| Slot {
            window: applicable.window,
            ends: applicable
                .window
                .saturating_add(applicable.window_ms as i64),
            count,
        };
        for ((key, _), count) in applicable.checks.iter().zip(&counts) {
            match shard.slots.get_mut(key) {
                Some(found) if found.window > applicable.window => found.count = *count,
                Some(found) => *found = slot(*count),
                None => {
                    shard.slots.insert(key.clone(), slot(*count));
                }
            }
        }
        if shard.slots.len() >= shard.sweep_at.max(MIN_SWEEP) {
            shard.slots.retain(|_, slot| slot.ends > now_ms);
            shard.sweep_at = shard.slots.len() * 2;
        }
        Ok(applicable.fields(&counts, now_ms))
    }

    /// Replaces what an admitted call reserved with what it spent, in every count of the
    /// window it was admitted in. Once that window has ended, it keeps what it counted, and
    /// tokens spent beyond the reservation count in the window of `now_ms`.
    pub(crate) fn settle(&self, applicable: &Applicable, reserved: u64, spent: u64, now_ms: i64) {
        let current = window_start(now_ms, applicable.window_ms).max(applicable.window);
        let over = spent.saturating_sub(reserved);
        let mut shard = self
            .shard(applicable.throttle())
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (key, _) in &applicable.checks {
            match shard.slots.get_mut(key) {
                Some(slot) if slot.window == applicable.window && current == applicable.window => {
                    slot.count = slot.count.saturating_sub(reserved).saturating_add(spent);
                }
                _ if over == 0 => {}
                Some(slot) if slot.window >= current => {
                    slot.count = slot.count.saturating_add(over)
                }
                slot => {
                    let fresh = Slot {
                        window: current,
                        ends: current.saturating_add(applicable.window_ms as i64),
                        count: over,
                    };
                    match slot {
                        Some(slot) => *slot = fresh,
                        None => {
                            shard.slots.insert(key.clone(), fresh);
                        }
                    }
                }
            }
        }
    }
}

/// Where a call's reserved tokens are counted.
pub(crate) enum Ledger {
    Local(Arc<Counters>),
    Cluster(Arc<ClusterLimits>),
}

/// The tokens an admitted model call reserved under a TOKEN policy, settled once with the
/// tokens its answer reports (or, without a report, the estimate of its prompt). A
/// reservation dropped unsettled keeps counting what it reserved.
pub struct Reservation {
    ledger: Ledger,
    applicable: Applicable,
    /// The estimate of the prompt's tokens within the reservation.
    prompt: u64,
    /// Whether the answer is read for usage (else the call keeps what it reserved).
    read: bool,
    settled: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("throttle", &self.applicable.throttle())
            .field("tokens", &self.applicable.cost)
            .finish()
    }
}

impl Reservation {
    /// A reservation of `applicable.cost` tokens, `prompt` of them for the prompt, whose
    /// answer is `read` for usage or not.
    pub(crate) fn new(ledger: Ledger, applicable: Applicable, (prompt, read): (u64, bool)) -> Self {
        Self {
            ledger,
            applicable,
            prompt,
            read,
            settled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Counts `spent` tokens in place of the reservation (only the first time).
    pub fn settle(&self, spent: u64) {
        use std::sync::atomic::Ordering;
        if self.settled.swap(true, Ordering::AcqRel) {
            return;
        }
        let reserved = self.applicable.cost;
        let now = crate::phases::wall_time(std::time::Instant::now()).timestamp_millis();
        match &self.ledger {
            Ledger::Local(counters) => counters.settle(&self.applicable, reserved, spent, now),
            Ledger::Cluster(cluster) => cluster.settle(&self.applicable, reserved, spent, now),
        }
    }

    /// Settles with the usage the model server reported. An answer read without a report
    /// (cut short, or not asked) keeps the reservation, or counts its estimate when that is
    /// more: what was generated and not relayed cannot be known. A call that got no answer
    /// to read counts the estimate of its prompt; one whose answer is not read keeps its
    /// reservation.
    pub fn settle_with(&self, usage: Option<&crate::usage::Usage>) {
        let spent = match usage {
            _ if !self.read => self.applicable.cost,
            Some(usage) if !usage.estimated => usage.total,
            Some(usage) => usage.total.max(self.applicable.cost),
            None => self.prompt,
        };
        self.settle(spent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infergate_core::throttle::TimeUnit;

    fn rule(kind: ThrottleType) -> ThrottleRule {
        ThrottleRule {
            throttle_id: "t1".into(),
            name: "t".into(),
            kind,
            time_interval: 1,
            time_unit: TimeUnit::Minute,
            api_call_limits: 5,
            user_call_limits: Some(3),
            app_call_limits: Some(2),
            ip_call_limits: Some(4),
            unit: ThrottleUnit::Request,
            default_max_tokens: 0,
            special_apps: [("vip".to_string(), 4)].into_iter().collect(),
            special_users: Default::default(),
        }
    }

    fn call(
        counters: &Counters,
        rule: &ThrottleRule,
        api: &str,
        caller: Caller,
        ip: &str,
        now: i64,
    ) -> Result<RateLimitFields, Refusal> {
        let applicable =
            Applicable::of(rule, &Arc::from(api), &caller, ip.parse().expect("ip"), now);
        counters.admit(rule, &applicable, now)
    }

    fn app(id: &str) -> Caller {
        Caller::App { app_id: id.into() }
    }

    /// The counts of a call by app `app_id` from `ip` that costs `cost`.
    fn costing(
        rule: &ThrottleRule,
        api: &str,
        app_id: &str,
        ip: &str,
        at: i64,
        cost: u64,
    ) -> Applicable {
        let mut applicable = Applicable::of(
            rule,
            &Arc::from(api),
            &app(app_id),
            ip.parse().expect("ip"),
            at,
        );
        applicable.cost = cost;
        applicable
    }

    #[test]
    fn each_dimension_refuses_at_its_limit_and_refusals_count_nothing() {
        let counters = Counters::default();
        let r = rule(ThrottleType::PerApi);
        let at = 60_000 * 10 + 500;
        assert!(call(&counters, &r, "a", app("x"), "10.0.0.1", at).is_ok());
        let fields = call(&counters, &r, "a", app("x"), "10.0.0.1", at).expect("second");
        assert_eq!(
            fields.policy,
            "\"api\";q=5;w=60, \"app\";q=2;w=60, \"ip\";q=4;w=60"
        );
        assert_eq!(
            fields.state,
            "\"api\";r=3;t=60, \"app\";r=0;t=60, \"ip\";r=2;t=60"
        );
        // The app's third call is refused, and refused again: nothing was counted.
        for _ in 0..3 {
            let refused = call(&counters, &r, "a", app("x"), "10.0.0.1", at).expect_err("app");
            assert_eq!((refused.dimension, refused.limit), (Dimension::App, 2));
            assert_eq!(refused.retry_after, 60);
        }
        // Another app from the same address: the IP allows 2 more.
        assert!(call(&counters, &r, "a", app("y"), "10.0.0.1", at).is_ok());
        assert!(call(&counters, &r, "a", app("y"), "10.0.0.1", at).is_ok());
        let refused = call(&counters, &r, "a", app("z"), "10.0.0.1", at).expect_err("ip");
        assert_eq!(refused.dimension, Dimension::Ip);
        // From elsewhere, the API's limit of 5 is the last one standing.
        assert!(call(&counters, &r, "a", app("z"), "10.0.0.2", at).is_ok());
        let refused = call(&counters, &r, "a", app("w"), "10.0.0.3", at).expect_err("api");
        assert_eq!(refused.dimension, Dimension::Api);
        // Type 1: another API has its own counts; the next window starts afresh.
        assert!(call(&counters, &r, "b", app("x"), "10.0.0.1", at).is_ok());
        assert!(call(&counters, &r, "a", app("x"), "10.0.0.1", at + 60_000).is_ok());
    }

    #[test]
    fn shared_policies_count_every_api_together_and_specials_replace_limits() {
        let counters = Counters::default();
        let r = rule(ThrottleType::Shared);
        let at = 5_000;
        for api in ["a", "b", "c", "d"] {
            assert!(
                call(&counters, &r, api, app("vip"), "10.0.0.1", at).is_ok(),
                "{api}"
            );
        }
        let refused = call(&counters, &r, "e", app("vip"), "10.9.9.9", at).expect_err("special");
        assert_eq!((refused.dimension, refused.limit), (Dimension::App, 4));
        let user = Caller::User {
            user_id: "u".into(),
        };
        assert!(call(&counters, &r, "a", user.clone(), "10.8.0.1", at).is_ok());
        let refused = call(&counters, &r, "a", user, "10.8.0.2", at).expect_err("api");
        assert_eq!(refused.dimension, Dimension::Api);
    }

    #[test]
    fn token_counts_fit_whole_reservations_and_settle_with_what_was_spent() {
        let counters = Counters::default();
        let mut r = rule(ThrottleType::PerApi);
        r.unit = ThrottleUnit::Token;
        r.api_call_limits = 1_000;
        r.app_call_limits = Some(500);
        r.ip_call_limits = None;
        let at = 60_000 * 3;
        let reserve = |cost: u64| costing(&r, "a", "x", "10.0.0.1", at, cost);
        let first = reserve(300);
        let fields = counters.admit(&r, &first, at).expect("fits");
        assert_eq!(
            fields.policy,
            "\"api_tokens\";q=1000;w=60, \"app_tokens\";q=500;w=60"
        );
        assert_eq!(
            fields.state,
            "\"api_tokens\";r=700;t=60, \"app_tokens\";r=200;t=60"
        );
        // 200 left for the app: a reservation of 201 is refused and counts nothing.
        let refused = counters.admit(&r, &reserve(201), at).expect_err("over");
        assert_eq!(
            (refused.dimension, refused.unit, refused.cost),
            (Dimension::App, ThrottleUnit::Token, 201)
        );
        assert!(counters.admit(&r, &reserve(200), at).is_ok());
        // The first call spent 120 of its 300: 180 come back.
        counters.settle(&first, 300, 120, at);
        let fields = counters.admit(&r, &reserve(180), at).expect("returned");
        assert!(
            fields.state.ends_with("\"app_tokens\";r=0;t=60"),
            "{}",
            fields.state
        );
        let mut other = rule(ThrottleType::PerApi);
        other.unit = ThrottleUnit::Token;
        other.api_call_limits = 100;
        other.app_call_limits = None;
        other.ip_call_limits = None;
        let call = |cost: u64| costing(&other, "b", "y", "10.0.0.2", at, cost);
        // A call that spent more than it reserved counts what it spent.
        let small = call(10);
        assert!(counters.admit(&other, &small, at).is_ok());
        counters.settle(&small, 10, 95, at);
        assert!(counters.admit(&other, &call(6), at).is_err());
        assert!(counters.admit(&other, &call(5), at).is_ok());
        // The window is full.
        assert!(counters.admit(&other, &call(1), at).is_err());
        // A call begun in this window but counted after it ends counts in the next one,
        // and a call still counting in the old window is not set back to it.
        let mut late = call(40);
        late.move_to(at + 60_000);
        let fields = counters
            .admit(&other, &late, at + 60_000)
            .expect("next window");
        assert_eq!(fields.state, "\"api_tokens\";r=60;t=60");
        assert!(counters.admit(&other, &call(61), at).is_err());
        let mut later = call(60);
        later.move_to(at + 60_000);
        assert!(counters.admit(&other, &later, at + 60_000).is_ok());
        // A call admitted in a window that ended before its answer did: it gives nothing
        // back, and what it spent beyond its reservation counts in the window of then.
        let next = at + 120_000;
        let mut slow = call(30);
        slow.move_to(next);
        assert!(counters.admit(&other, &slow, next).is_ok());
        counters.settle(&slow, 30, 75, next + 60_000);
        let mut after = call(56);
        after.move_to(next + 60_000);
        assert!(counters.admit(&other, &after, next + 60_000).is_err());
        after.cost = 55;
        let fields = counters
            .admit(&other, &after, next + 60_000)
            .expect("55 left");
        assert_eq!(fields.state, "\"api_tokens\";r=0;t=60");
    }

    #[test]
    fn old_windows_are_swept() {
        let counters = Counters::default();
        let mut r = rule(ThrottleType::PerApi);
        r.ip_call_limits = Some(1);
        r.api_call_limits = 1_000_000;
        r.app_call_limits = None;
        r.user_call_limits = None;
        for i in 0..3000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            assert!(call(&counters, &r, "a", Caller::Anonymous, &ip, 1_000).is_ok());
        }
        let total = |c: &Counters| -> usize {
            c.shards
                .iter()
                .map(|s| s.lock().expect("lock").slots.len())
                .sum()
        };
        assert!(total(&counters) > 3000);
        for i in 0..1100u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i).to_string();
            assert!(call(&counters, &r, "a", Caller::Anonymous, &ip, 120_000).is_ok());
        }
        assert!(total(&counters) < 2000, "{}", total(&counters));
    }
}
