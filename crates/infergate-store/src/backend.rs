//! What the shared SQL ([`crate::sqlite`] and [`crate::postgres`] each compile `sql/` against
//! their store) needs of a backend, and the kinds of change the change log records.

use sqlx::{Database, Pool, Transaction};

use crate::{StoreError, StoreResult};

/// A database the shared statements run on.
pub(crate) trait Backend {
    type Db: Database;

    /// The pool for reads outside a transaction.
    fn reader(&self) -> &Pool<Self::Db>;

    /// A write transaction; writes are serialised (one writer, or one advisory lock), so
    /// every read-then-write rule holds across nodes.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Self::Db>>;

    /// A read-only transaction that sees one snapshot of the database.
    async fn begin_snapshot(&self) -> StoreResult<Transaction<'static, Self::Db>>;

    /// Tells other nodes about `revision` once the transaction commits.
    async fn announce(tx: &mut Transaction<'static, Self::Db>, revision: i64) -> StoreResult<()>;
}

/// What a write changed, as the change log records it: other nodes reread just that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Changed<'a> {
    /// A service with its APIs (and their authorizations).
    Service(&'a str),
    /// An API with its authorizations.
    Api(&'a str),
    /// An app with its AppCodes.
    App(&'a str),
    /// A user with its role grants, access keys (and their locks) and revoked tokens.
    User(&'a str),
    /// A throttling policy with its bindings and special limits.
    Throttle(&'a str),
}

impl<'a> Changed<'a> {
    pub(crate) fn entity(&self) -> &'static str {
        match self {
            Changed::Service(_) => "service",
            Changed::Api(_) => "api",
            Changed::App(_) => "app",
            Changed::User(_) => "user",
            Changed::Throttle(_) => "throttle",
        }
    }

    pub(crate) fn id(&self) -> &'a str {
        match self {
            Changed::Service(id)
            | Changed::Api(id)
            | Changed::App(id)
            | Changed::User(id)
            | Changed::Throttle(id) => id,
        }
    }

    /// Reads a logged change back.
    pub(crate) fn parse(entity: &str, id: &'a str) -> StoreResult<Self> {
        Ok(match entity {
            "service" => Changed::Service(id),
            "api" => Changed::Api(id),
            "app" => Changed::App(id),
            "user" => Changed::User(id),
            "throttle" => Changed::Throttle(id),
            other => {
                return Err(StoreError::Internal(format!(
                    "stored change entity is unreadable: {other}"
                )))
            }
        })
    }
}
