//! Upstreams: the order a call tries a service's upstreams in (the least busy first, or
//! round robin; ones that recently refused a connection last), their passive health, the
//! attempt loop both transports run, and the pool of idle connections.

pub(crate) mod health;
pub(crate) mod pool;
pub(crate) mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use infergate_core::model::LoadBalancing;
use infergate_core::snapshot::{ApiRoute, InFlight, Upstream};
use smallvec::SmallVec;

use crate::error::GatewayError;
use crate::observe::Observers;
use crate::phases::CallRecord;

/// The upstreams of a call (with their index in the service) in the order to try them: a
/// service's only upstream needs no list.
pub(crate) enum Order<'u> {
    One(Option<(usize, &'u Upstream)>),
    Many(std::vec::IntoIter<(usize, &'u Upstream)>),
}

impl<'u> Iterator for Order<'u> {
    type Item = (usize, &'u Upstream);

    fn next(&mut self) -> Option<(usize, &'u Upstream)> {
        match self {
            Order::One(only) => only.take(),
            Order::Many(list) => list.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match self {
            Order::One(only) => usize::from(only.is_some()),
            Order::Many(list) => list.len(),
        };
        (len, Some(len))
    }
}

impl ExactSizeIterator for Order<'_> {}

/// The longest an upstream's `Retry-After` keeps it out of rotation.
const MAX_RETRY_AFTER_S: u64 = 300;

/// The passive health of upstreams, and the order a call tries them in.
pub(crate) struct Upstreams {
    /// What active health checks found.
    pub(crate) health: health::HealthBook,
    ejected: Mutex<HashMap<String, Instant>>,
    /// Whether `ejected` may hold an entry: calls skip its lock while nothing is ejected.
    any_ejected: AtomicBool,
    ejection: Duration,
}

impl Upstreams {
    pub(crate) fn new(ejection: Duration) -> Self {
        Self {
            health: Default::default(),
            ejected: Mutex::new(HashMap::new()),
            any_ejected: AtomicBool::new(false),
            ejection,
        }
    }

    /// Whether the upstream of this pool key is ejected.
    fn is_ejected(&self, authority: &str) -> bool {
        let Ok(mut map) = self.ejected.lock() else {
            return false;
        };
        let ejected = match map.get(authority) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                map.remove(authority);
                false
            }
            None => false,
        };
        if map.is_empty() {
            self.any_ejected.store(false, Ordering::Relaxed);
        }
        ejected
    }

    fn eject(&self, authority: &str) {
        self.eject_for(authority, self.ejection);
    }

    fn eject_for(&self, authority: &str, time: Duration) {
        if let Ok(mut map) = self.ejected.lock() {
            let now = Instant::now();
            // Ejections that ended (of upstreams no call asked about since) go.
            map.retain(|_, until| *until > now);
            map.insert(authority.to_owned(), now + time);
            self.any_ejected.store(true, Ordering::Relaxed);
        }
    }

    /// Upstreams in the order to try: healthy ones first (under `least_outstanding`, the
    /// one with the fewest calls in flight from this node for its weight leads, ties drawn
    /// at random in proportion to their weights; the rest in rotation), then ejected ones.
    fn order<'u>(&self, api: &'u ApiRoute) -> Result<Order<'u>, GatewayError> {
        let service = &api.service;
        let upstreams = &service.upstreams;
        // An upstream that failed its health checks gets no calls until it passes again.
        let checked = service.health_check.is_some() && self.health.any_down();
        let down = |i: usize| checked && self.health.is_down(service.own_key(i));
        let all_down = || {
            GatewayError::UpstreamUnavailable(
                "every upstream of the service failed its health checks".into(),
            )
        };
        if upstreams.len() < 2 {
            // Nothing to rotate or reorder.
            return match upstreams.first() {
                Some(_) if down(0) => Err(all_down()),
                Some(only) => Ok(Order::One(Some((0, only)))),
                None => Err(GatewayError::UpstreamUnavailable(
                    "the service has no upstream".into(),
                )),
            };
        }
        let rotation = service
            .rotation()
            .filter(|&i| !down(i))
            .map(|i| (i, &upstreams[i]))
            .collect::<SmallVec<[_; 8]>>();
        if rotation.is_empty() {
            return Err(all_down());
        }
        let rotation = rotation.into_iter();
        let mut order: Vec<_> = if self.any_ejected.load(Ordering::Relaxed) {
            let (healthy, ejected): (Vec<_>, Vec<_>) = rotation.partition(|(i, _)| {
                !self.is_ejected(service.pool_key(*i)) && !self.is_ejected(service.own_key(*i))
            });
            healthy.into_iter().chain(ejected).collect()
        } else {
            rotation.collect()
        };
        if service.load_balancing == LoadBalancing::LeastOutstanding {
            let healthy = order
                .iter()
                .take_while(|(i, _)| {
                    !self.is_ejected_now(service.pool_key(*i))
                        && !self.is_ejected_now(service.own_key(*i))
                })
                .count()
                .max(1);
            let busy: SmallVec<[(u64, u64); 8]> = order[..healthy]
                .iter()
                .map(|(i, _)| (service.in_flight(*i) as u64, u64::from(service.weight(*i))))
                .collect();
            let lead = least_busy(&busy, &mut rand::thread_rng());
            order[..=lead].rotate_right(1);
        }
        Ok(Order::Many(order.into_iter()))
    }

    /// Whether an upstream is ejected, without the lock while none is.
    fn is_ejected_now(&self, authority: &str) -> bool {
        self.any_ejected.load(Ordering::Relaxed) && self.is_ejected(authority)
    }
}

/// The place of the least busy of `busy` (calls in flight, weight): the fewest calls per
/// unit of weight; ties drawn at random in proportion to their weights.
fn least_busy(busy: &[(u64, u64)], rng: &mut impl rand::Rng) -> usize {
    // n/w < m/v, compared as n·v < m·w.
    let Some(&(n, w)) = busy.iter().min_by(|(n, w), (m, v)| (n * v).cmp(&(m * w))) else {
        return 0;
    };
    let ties = || {
        busy.iter()
            .enumerate()
            .filter(move |(_, (m, v))| m * w == n * v)
    };
    let total: u64 = ties().map(|(_, (_, v))| v).sum();
    let mut draw = rng.gen_range(0..total.max(1));
    for (at, (_, v)) in ties() {
        if draw < *v {
            return at;
        }
        draw -= v;
    }
    0
}

/// How an attempt on one upstream went wrong.
pub(crate) enum Failure {
    Timeout,
    /// No connection could be opened.
    Connect(String),
    /// No connection could be opened because this node ran out of something (file
    /// descriptors, memory): no upstream is to blame, none is tried next.
    Local {
        resource: &'static str,
        why: String,
    },
    Other(String),
    /// The client's side failed (its body's size, pace or framing): the call ends with this
    /// error, and no upstream is blamed.
    Client(GatewayError),
}

impl From<pool::ConnectError> for Failure {
    fn from(err: pool::ConnectError) -> Self {
        match err.local {
            Some(resource) => Failure::Local {
                resource,
                why: err.why,
            },
            None => Failure::Connect(err.why),
        }
    }
}

impl Upstreams {
    /// Counts and logs a failed attempt (sent at `sent_at`). A refused connection (or TLS
    /// handshake) ejects the upstream, as this service reaches it (a bundle of CAs one
    /// service trusts wrongly ejects nothing of another's), and gives the reason, to try
    /// the next one; any other failure ends the call. This node's own shortage (file
    /// descriptors, memory) ejects nothing and answers 503.
    fn failed(
        &self,
        api: &ApiRoute,
        (index, upstream): (usize, &Upstream),
        failure: Failure,
        (record, observers, sent_at): (&mut CallRecord, &Observers, Instant),
    ) -> Result<String, GatewayError> {
        let authority = &*upstream.authority;
        match failure {
            Failure::Client(err) => Err(err),
            Failure::Timeout => {
                observers.upstream_failed(record, authority, sent_at, "timeout");
                Err(GatewayError::UpstreamTimeout {
                    timeout_ms: api.service.timeout.as_millis(),
                })
            }
            Failure::Connect(why) => {
                observers.upstream_failed(record, authority, sent_at, "connect");
                tracing::warn!(upstream = %authority, error = %why, "connecting to the upstream failed");
                self.eject(api.service.pool_key(index));
                Ok(format!("connecting to {authority} failed"))
            }
            Failure::Local { resource, why } => {
                observers.local_limit(resource);
                tracing::error!(upstream = %authority, resource, error = %why, "this node ran out of a resource while connecting to an upstream; the upstream stays in rotation (raise the open-file limit, or lower max_connections)");
                Err(GatewayError::Overloaded(
                    "the gateway is out of resources (file descriptors or memory)".into(),
                ))
            }
            Failure::Other(why) => {
                observers.upstream_failed(record, authority, sent_at, "other");
                tracing::warn!(upstream = %authority, error = %why, "upstream request failed");
                Err(GatewayError::UpstreamUnavailable(format!(
                    "the request to {authority} failed"
                )))
            }
        }
    }

    /// The attempt loop of both transports: tries the API's upstreams in [`Upstreams::order`]
    /// until one answers with a response head, recording each attempt. Upstreams the gateway
    /// cannot speak to are skipped; a refused connection moves on to the next upstream, and
    /// any other failure ends the call. A service's `retry` bounds the attempts and says
    /// whether a refused connection, or an answer of 5xx or 429, moves the call on (the
    /// answer dropped before any byte of it reached the client, and only while the
    /// transport still holds the body); a 429 or 503 with `Retry-After` ejects its upstream
    /// for that long. `Ok(None)`: the client left while it waited.
    pub(crate) async fn try_in_turn<'u, T: Attempts>(
        &self,
        api: &'u ApiRoute,
        record: &mut CallRecord,
        observers: &Observers,
        transport: &mut T,
    ) -> Result<Option<Answered<'u, T::Answer>>, GatewayError> {
        let order = self.order(api)?;
        let retry = api.service.retry.as_ref();
        let attempts = order
            .len()
            .min(retry.map_or(usize::MAX, |r| r.attempts as usize));
        let mut last_error = String::new();
        // One deadline for all the attempts of a call; the first is sent as it is set.
        let started = Instant::now();
        let deadline = started + api.service.timeout;
        for (n, (index, upstream)) in order.take(attempts).enumerate() {
            if !transport.speaks(&upstream.scheme) {
                last_error = format!("{} upstreams are not served here", upstream.scheme);
                continue;
            }
            record.upstream = Some(upstream.authority.clone());
            // Counted in flight on this upstream until the call ends or moves on.
            record.in_flight = Some(InFlight::start(&api.service, index));
            let sent_at = if n == 0 { started } else { Instant::now() };
            let attempt = Attempt {
                upstream,
                index,
                sent_at,
                deadline,
                last: n + 1 == attempts,
            };
            match transport.attempt(&attempt).await {
                Attempted::Answered(answer) => {
                    // One reading of the clock for the upstream's time and the time to the
                    // head.
                    let at = Instant::now();
                    observers.upstream_answered(record, upstream, sent_at, at);
                    let status = T::status(&answer);
                    // A call that changes something is sent again only after an answer
                    // saying it was not taken in (429, 503).
                    let unprocessed = matches!(status, 429 | 503);
                    let moves_on = !attempt.last
                        && retry.is_some_and(|r| r.on_status(status))
                        && (record.method.is_idempotent() || unprocessed)
                        && transport.can_resend();
                    if moves_on {
                        let authority = &*upstream.authority;
                        // This service's answer: it puts the upstream last for this
                        // service alone.
                        if let Some(secs) = T::retry_after(&answer) {
                            self.eject_for(
                                api.service.own_key(index),
                                Duration::from_secs(secs.min(MAX_RETRY_AFTER_S)),
                            );
                        }
                        observers.upstream_failed(record, authority, sent_at, "status");
                        tracing::info!(upstream = %authority, status, "upstream answered; trying the next");
                        last_error = format!("{authority} answered {status}");
                        continue;
                    }
                    return Ok(Some(Answered {
                        answer,
                        upstream,
                        index,
                        at,
                    }));
                }
                Attempted::Failed(Failure::Connect(why))
                    if retry.is_some_and(|r| !r.on_connect()) =>
                {
                    observers.upstream_failed(record, &upstream.authority, sent_at, "connect");
                    tracing::warn!(upstream = %upstream.authority, error = %why, "connecting to the upstream failed");
                    return Err(GatewayError::UpstreamUnavailable(format!(
                        "connecting to {} failed",
                        upstream.authority
                    )));
                }
                Attempted::Failed(failure) => {
                    last_error = self.failed(
                        api,
                        (index, upstream),
                        failure,
                        (record, observers, sent_at),
                    )?;
                }
                Attempted::Abandoned => return Ok(None),
                Attempted::Spent => break,
            }
        }
        Err(GatewayError::UpstreamUnavailable(last_error))
    }
}

/// One attempt of a call on one upstream.
pub(crate) struct Attempt<'u> {
    pub upstream: &'u Upstream,
    /// The upstream's place in its service.
    pub index: usize,
    pub sent_at: Instant,
    /// When the upstream must have answered with a response head.
    pub deadline: Instant,
    /// Whether no upstream is left to try after this one.
    pub last: bool,
}

/// How one attempt went.
pub(crate) enum Attempted<T> {
    /// The upstream answered with a response head.
    Answered(T),
    Failed(Failure),
    /// The client left while it waited: nothing is answered.
    Abandoned,
    /// Nothing is left to send (a streamed body went with an earlier attempt): the call
    /// ends with the last failure.
    Spent,
}

/// A response head from an upstream, and when it came.
pub(crate) struct Answered<'u, T> {
    pub answer: T,
    pub upstream: &'u Upstream,
    /// The upstream's place in its service.
    pub index: usize,
    pub at: Instant,
}

/// A transport's way to send a call to one upstream and read its response head.
pub(crate) trait Attempts {
    type Answer;

    /// Whether the transport can call an upstream of `scheme`.
    fn speaks(&self, scheme: &str) -> bool;

    /// Whether the call can be sent again (its body is still in hand).
    fn can_resend(&self) -> bool;

    /// The status of an answer.
    fn status(answer: &Self::Answer) -> u16;

    /// The seconds of a 429's or 503's `Retry-After` (a number of seconds).
    fn retry_after(answer: &Self::Answer) -> Option<u64>;

    async fn attempt(&mut self, attempt: &Attempt<'_>) -> Attempted<Self::Answer>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running out of file descriptors (or memory) while connecting is this node's
    /// shortage: 503, and the upstream stays in rotation; a refused connection ejects it.
    #[test]
    fn a_local_shortage_answers_503_and_ejects_nothing() {
        let (snapshot, _) = crate::authn::tests::fixture(false);
        let path = format!("/v1/infers/{}", crate::authn::tests::SID);
        let api = snapshot.route(&path).expect("routed")[0].clone();
        let upstream = &api.service.upstreams[0];
        let upstreams = Upstreams::new(Duration::from_secs(10));
        let observers = Observers::default();
        let mut record = CallRecord::for_tests(http::Method::GET);
        let shortage = Failure::from(pool::ConnectError {
            why: "connecting: Too many open files".into(),
            local: Some("file_descriptors"),
        });
        let answer = upstreams.failed(
            &api,
            (0, upstream),
            shortage,
            (&mut record, &observers, Instant::now()),
        );
        let err = answer.expect_err("the call ends");
        assert_eq!(err.parts().0, http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(!upstreams.is_ejected_now(api.service.pool_key(0)));
        let refused = Failure::from(pool::ConnectError::remote("refused".into()));
        let next = upstreams.failed(
            &api,
            (0, upstream),
            refused,
            (&mut record, &observers, Instant::now()),
        );
        assert!(next.is_ok(), "the next upstream is tried");
        assert!(upstreams.is_ejected_now(api.service.pool_key(0)));
    }

    #[test]
    fn the_least_busy_is_counted_per_unit_of_weight() {
        let mut rng = rand::thread_rng();
        // 2 calls on a weight of 3 is less busy than 1 on a weight of 1.
        assert_eq!(least_busy(&[(1, 1), (2, 3)], &mut rng), 1);
        assert_eq!(least_busy(&[(0, 1), (2, 3)], &mut rng), 0);
        assert_eq!(least_busy(&[], &mut rng), 0);
        // Idle upstreams of weights 3 and 1 lead about 3:1.
        let mut leads = [0u32; 2];
        for _ in 0..4000 {
            leads[least_busy(&[(0, 3), (0, 1)], &mut rng)] += 1;
        }
        // 3000 expected; the binomial spread is about 27.
        assert!((2850..3150).contains(&leads[0]), "{leads:?}");
    }
}
