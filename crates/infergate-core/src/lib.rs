//! The domain of infergate: resources, their validation rules, identifiers, secrets, access
//! rules and IAM tokens.
//!
//! Everything here is pure: no IO, no clock (callers pass `now`), no HTTP. The store
//! persists these types, the admin plane validates requests with them and the gateway will
//! make its call-time decisions with them.

pub mod access;
pub mod crypto;
pub mod ids;
pub mod lockout;
pub mod logsink;
pub mod model;
pub mod net;
pub mod paths;
pub mod snapshot;
pub mod throttle;
pub mod token;
pub mod validate;

pub use crypto::{MasterKey, Secret};
