//! Brakes on guessing: consecutive failures of one credential lock it for a while
//! (Keystone's `lockout_failure_attempts`/`lockout_duration`, the spec's AK lockout §5.6).
//!
//! The rule lives here once; the store applies it to the counters it keeps for the whole
//! cluster, and every plane reads the result.

/// How many consecutive failures lock a credential, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock; 0 turns the lockout off.
    pub attempts: u32,
    /// How long a lock holds, in milliseconds.
    pub duration_ms: i64,
}

impl LockoutPolicy {
    /// Passwords: Huawei IAM's defaults, 5 failures lock the user for 15 minutes.
    pub const PASSWORD: Self = Self {
        attempts: 5,
        duration_ms: 15 * 60 * 1000,
    };
    /// IAM access keys (spec §5.6): 5 failed signatures lock the AK for 5 minutes.
    pub const ACCESS_KEY: Self = Self {
        attempts: 5,
        duration_ms: 5 * 60 * 1000,
    };

    pub fn enabled(&self) -> bool {
        self.attempts > 0
    }
}

/// What is locked: a user's password, or an IAM access key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockSubject<'a> {
    /// A user's password, by user id.
    Password(&'a str),
    /// An IAM access key, by its AK.
    AccessKey(&'a str),
}

impl LockSubject<'_> {
    /// The kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            LockSubject::Password(_) => "password",
            LockSubject::AccessKey(_) => "access_key",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            LockSubject::Password(id) | LockSubject::AccessKey(id) => id,
        }
    }
}

/// The failures recorded against one credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    /// Consecutive failures since the last success or lock.
    pub count: u32,
    /// When the last failure happened (ms since the epoch).
    pub last_at: i64,
    /// Until when the credential is locked (ms since the epoch); 0 when it never was.
    pub locked_until: i64,
}

impl Failures {
    pub fn locked(&self, now: i64) -> bool {
        self.locked_until > now
    }

    /// The record after one more failure at `now`. A locked credential counts nothing more
    /// (its lock is not extended); the failure that reaches `attempts` locks it and starts
    /// the count again. A count left alone for a lock's duration is forgotten, so failures
    /// spread over a long time (or a success seen by another node) never add up to a lock.
    pub fn after_failure(self, now: i64, policy: LockoutPolicy) -> Self {
        if !policy.enabled() || self.locked(now) {
            return self;
        }
        let earlier = if now.saturating_sub(self.last_at) > policy.duration_ms {
            0
        } else {
            self.count
        };
        let count = earlier.saturating_add(1);
        if count >= policy.attempts {
            Self {
                count: 0,
                last_at: now,
                locked_until: now.saturating_add(policy.duration_ms),
            }
        } else {
            Self {
                count,
                last_at: now,
                locked_until: self.locked_until,
            }
        }
    }

    /// Whether anything is recorded that a success should clear.
    pub fn any(&self) -> bool {
        self.count > 0 || self.locked_until > 0
    }
}

/// Where a plane that cannot wait on the store (the gateway) reports the verdicts on IAM
/// access-key signatures; the receiver records them in the store, which locks the key for
/// every node.
pub trait KeyVerdicts: Send + Sync + 'static {
    /// A signature made with a known, active key did not verify.
    fn failed(&self, access: &str);
    /// A signature made with the key verified.
    fn succeeded(&self, access: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LockoutPolicy = LockoutPolicy {
        attempts: 5,
        duration_ms: 1000,
    };

    fn fail(mut f: Failures, times: u32, now: i64) -> Failures {
        for _ in 0..times {
            f = f.after_failure(now, POLICY);
        }
        f
    }

    #[test]
    fn the_fifth_consecutive_failure_locks_for_the_duration() {
        let four = fail(Failures::default(), 4, 10);
        assert_eq!(four.count, 4);
        assert!(!four.locked(10));
        let five = four.after_failure(20, POLICY);
        assert!(five.locked(20));
        assert_eq!(five.locked_until, 1020);
        assert!(five.locked(1019));
        assert!(!five.locked(1020));
        // Failures while locked neither count nor extend the lock.
        let more = fail(five, 10, 500);
        assert_eq!(more, five);
        // After the lock, counting starts again.
        let after = more.after_failure(1020, POLICY);
        assert_eq!(after.count, 1);
        assert!(!after.locked(1020));
    }

    #[test]
    fn an_old_count_is_forgotten() {
        let three = fail(Failures::default(), 3, 0);
        let later = three.after_failure(1001, POLICY);
        assert_eq!(later.count, 1);
        let soon = three.after_failure(1000, POLICY);
        assert_eq!(soon.count, 4);
    }

    #[test]
    fn a_policy_of_zero_attempts_never_locks() {
        let off = LockoutPolicy {
            attempts: 0,
            duration_ms: 1000,
        };
        let mut f = Failures::default();
        for now in 0..100 {
            f = f.after_failure(now, off);
        }
        assert!(!f.locked(50));
        assert!(!f.any());
    }

    #[test]
    fn one_attempt_locks_at_once() {
        let one = LockoutPolicy {
            attempts: 1,
            duration_ms: 5,
        };
        assert!(Failures::default().after_failure(0, one).locked(4));
    }
}
