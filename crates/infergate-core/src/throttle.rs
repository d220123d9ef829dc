//! Request throttling policies in Huawei APIG's shape: limits per API, user, app and source
//! IP in fixed windows aligned to the epoch, bound to APIs, with special limits for single
//! apps or users. The rules of what a valid policy is live here; the gateway counts.

use std::fmt;
use std::str::FromStr;

use crate::validate::{FieldError, FieldResult};

/// The largest limit or interval APIG accepts.
pub const MAX_LIMIT: u64 = 2_147_483_647;

/// The unit of a policy's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl TimeUnit {
    pub const ALL: [TimeUnit; 4] = [
        TimeUnit::Second,
        TimeUnit::Minute,
        TimeUnit::Hour,
        TimeUnit::Day,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Second => "SECOND",
            TimeUnit::Minute => "MINUTE",
            TimeUnit::Hour => "HOUR",
            TimeUnit::Day => "DAY",
        }
    }

    /// The unit as a word in a sentence (`minute`).
    pub fn word(self) -> &'static str {
        match self {
            TimeUnit::Second => "second",
            TimeUnit::Minute => "minute",
            TimeUnit::Hour => "hour",
            TimeUnit::Day => "day",
        }
    }

    pub fn millis(self) -> u64 {
        match self {
            TimeUnit::Second => 1_000,
            TimeUnit::Minute => 60_000,
            TimeUnit::Hour => 3_600_000,
            TimeUnit::Day => 86_400_000,
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TimeUnit {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        TimeUnit::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or(())
    }
}

/// How a policy counts the APIs bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleType {
    /// `1`: each bound API has its own counts.
    PerApi,
    /// `2`: one count shared by every bound API.
    Shared,
}

impl ThrottleType {
    pub fn code(self) -> i64 {
        match self {
            ThrottleType::PerApi => 1,
            ThrottleType::Shared => 2,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(ThrottleType::PerApi),
            2 => Some(ThrottleType::Shared),
            _ => None,
        }
    }
}

/// What a policy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ThrottleUnit {
    /// Calls (the default).
    #[default]
    Request,
    /// The total tokens of model calls: reserved at admission, settled with the usage the
    /// answer reports.
    Token,
}

impl ThrottleUnit {
    pub const ALL: [ThrottleUnit; 2] = [ThrottleUnit::Request, ThrottleUnit::Token];

    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleUnit::Request => "REQUEST",
            ThrottleUnit::Token => "TOKEN",
        }
    }

    /// The counted thing as a plural word (`calls`, `tokens`).
    pub fn plural(self) -> &'static str {
        match self {
            ThrottleUnit::Request => "calls",
            ThrottleUnit::Token => "tokens",
        }
    }
}

impl fmt::Display for ThrottleUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ThrottleUnit {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        ThrottleUnit::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or(())
    }
}

/// The completion tokens a TOKEN policy reserves for a call that gives no `max_tokens`
/// (nor `max_completion_tokens`, `max_output_tokens`), unless the policy sets its own.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// A throttling policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub remark: String,
    /// Calls of the API (or, shared, of every bound API) per window.
    pub api_call_limits: u64,
    /// Calls per window by one IAM user.
    pub user_call_limits: Option<u64>,
    /// Calls per window by one app.
    pub app_call_limits: Option<u64>,
    /// Calls per window from one source IP.
    pub ip_call_limits: Option<u64>,
    pub time_interval: u64,
    pub time_unit: TimeUnit,
    pub kind: ThrottleType,
    /// What the limits count.
    pub unit: ThrottleUnit,
    /// TOKEN: the completion tokens reserved for a call that does not cap its answer.
    pub default_max_tokens: u64,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The limits and window of a policy as a request gives them, checked by [`check`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub api_call_limits: Option<i64>,
    pub user_call_limits: Option<i64>,
    pub app_call_limits: Option<i64>,
    pub ip_call_limits: Option<i64>,
    pub time_interval: Option<i64>,
}

fn limit(field: &str, value: Option<i64>) -> FieldResult<Option<u64>> {
    match value {
        None => Ok(None),
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => Ok(Some(n as u64)),
        Some(_) => Err(FieldError::new(
            field,
            format!("must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// The checked limits: (api, user, app, ip, interval).
pub type CheckedLimits = (u64, Option<u64>, Option<u64>, Option<u64>, u64);

/// Checks a policy's limits: `api_call_limits` and `time_interval` are required; the user
/// and IP limits are at most the API's, the app limit at most the user's where both are set
/// (and at most the API's).
pub fn check(limits: Limits) -> FieldResult<CheckedLimits> {
    let api = limit("api_call_limits", limits.api_call_limits)?
        .ok_or_else(|| FieldError::new("api_call_limits", "is required"))?;
    let interval = limit("time_interval", limits.time_interval)?
        .ok_or_else(|| FieldError::new("time_interval", "is required"))?;
    let user = limit("user_call_limits", limits.user_call_limits)?;
    let app = limit("app_call_limits", limits.app_call_limits)?;
    let ip = limit("ip_call_limits", limits.ip_call_limits)?;
    let at_most = |field: &str, value: Option<u64>, bound: u64, of: &str| match value {
        Some(v) if v > bound => Err(FieldError::new(
            field,
            format!("must not exceed {of} ({bound})"),
        )),
        _ => Ok(()),
    };
    at_most("user_call_limits", user, api, "api_call_limits")?;
    at_most("ip_call_limits", ip, api, "api_call_limits")?;
    at_most("app_call_limits", app, api, "api_call_limits")?;
    if let Some(user) = user {
        at_most("app_call_limits", app, user, "user_call_limits")?;
    }
    Ok((api, user, app, ip, interval))
}

/// The unit of a policy and its default reservation, as a request gives them: `unit` is
/// REQUEST (default) or TOKEN; `default_max_tokens` (1–[`MAX_LIMIT`]) only with TOKEN.
pub fn unit(
    unit: Option<&str>,
    default_max_tokens: Option<i64>,
) -> FieldResult<(ThrottleUnit, u64)> {
    let unit = match unit {
        None => ThrottleUnit::Request,
        Some(word) => ThrottleUnit::from_str(word)
            .map_err(|_| FieldError::new("unit", format!("{word:?} is not REQUEST or TOKEN")))?,
    };
    let reserve = limit("default_max_tokens", default_max_tokens)?;
    match (unit, reserve) {
        (ThrottleUnit::Request, Some(_)) => Err(FieldError::new(
            "default_max_tokens",
            "applies only to a policy whose unit is TOKEN",
        )),
        (ThrottleUnit::Request, None) => Ok((unit, 0)),
        (ThrottleUnit::Token, reserve) => Ok((unit, reserve.unwrap_or(DEFAULT_MAX_TOKENS))),
    }
}

/// [`name`]'s rule as an ECMA-262 pattern, for the OpenAPI document.
pub const NAME_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_]{2,63}$";

/// A policy name: 3 to 64 letters, digits and `_`, starting with a letter.
pub fn name(value: &str) -> FieldResult<()> {
    let len = value.chars().count();
    let first_letter = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic());
    if !(3..=64).contains(&len)
        || !first_letter
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(FieldError::new(
            "name",
            "must be 3 to 64 letters, digits or _, starting with a letter",
        ));
    }
    Ok(())
}

/// Which caller a special limit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialKind {
    App,
    User,
}

impl SpecialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialKind::App => "APP",
            SpecialKind::User => "USER",
        }
    }
}

impl FromStr for SpecialKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "APP" => Ok(SpecialKind::App),
            "USER" => Ok(SpecialKind::User),
            _ => Err(()),
        }
    }
}

/// A policy bound to an API (an API has at most one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleBinding {
    pub id: String,
    pub throttle_id: String,
    pub api_id: String,
    pub created_at: i64,
}

/// One app's or user's own limit under a policy, in place of the app or user limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleSpecial {
    pub id: String,
    pub throttle_id: String,
    pub object_type: SpecialKind,
    pub object_id: String,
    pub call_limits: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The start of the fixed window holding `now` (ms), windows aligned to the epoch.
pub fn window_start(now_ms: i64, window_ms: u64) -> i64 {
    let window = window_ms.max(1) as i64;
    now_ms - now_ms.rem_euclid(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(api: i64, user: Option<i64>, app: Option<i64>, ip: Option<i64>) -> Limits {
        Limits {
            api_call_limits: Some(api),
            user_call_limits: user,
            app_call_limits: app,
            ip_call_limits: ip,
            time_interval: Some(1),
        }
    }

    #[test]
    fn limits_keep_their_order() {
        assert_eq!(
            check(limits(100, Some(50), Some(20), Some(100))).expect("ok"),
            (100, Some(50), Some(20), Some(100), 1)
        );
        for (bad, field) in [
            (limits(100, Some(101), None, None), "user_call_limits"),
            (limits(100, None, None, Some(101)), "ip_call_limits"),
            (limits(100, Some(50), Some(51), None), "app_call_limits"),
            (limits(100, None, Some(101), None), "app_call_limits"),
            (limits(0, None, None, None), "api_call_limits"),
            (
                limits(MAX_LIMIT as i64 + 1, None, None, None),
                "api_call_limits",
            ),
            (limits(10, Some(-1), None, None), "user_call_limits"),
        ] {
            let err = check(bad).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
        let missing = Limits {
            time_interval: None,
            ..limits(1, None, None, None)
        };
        assert_eq!(check(missing).expect_err("interval").field, "time_interval");
    }

    #[test]
    fn names_and_units_and_windows() {
        assert!(name("per_app_1").is_ok());
        for bad in ["ab", "1abc", "a-b-c", &"a".repeat(65), "日本語名"] {
            assert!(name(bad).is_err(), "{bad}");
        }
        assert_eq!("MINUTE".parse::<TimeUnit>(), Ok(TimeUnit::Minute));
        assert!("minute".parse::<TimeUnit>().is_err());
        assert_eq!(window_start(61_500, 60_000), 60_000);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(ThrottleType::from_code(2), Some(ThrottleType::Shared));
        assert_eq!(ThrottleType::from_code(3), None);
    }

    #[test]
    fn units_and_their_reservations() {
        assert_eq!(unit(None, None), Ok((ThrottleUnit::Request, 0)));
        assert_eq!(
            unit(Some("TOKEN"), None),
            Ok((ThrottleUnit::Token, DEFAULT_MAX_TOKENS))
        );
        assert_eq!(unit(Some("TOKEN"), Some(64)), Ok((ThrottleUnit::Token, 64)));
        for (bad, field) in [
            (unit(Some("token"), None), "unit"),
            (unit(Some(""), None), "unit"),
            (unit(Some("REQUEST"), Some(5)), "default_max_tokens"),
            (unit(Some("TOKEN"), Some(0)), "default_max_tokens"),
            (unit(Some("TOKEN"), Some(-3)), "default_max_tokens"),
        ] {
            assert_eq!(bad.expect_err(field).field, field);
        }
    }
}
