//! Who may do what in a project (spec §1 permission table, mapped onto our three roles).
//!
//! `admin` may do everything in the project; `member` may create services and apps and
//! manage what it created; `viewer` may only read. A user with no role may do nothing.

use crate::model::Role;

/// The strongest of the roles a user holds in one project, if any.
pub fn strongest(roles: impl IntoIterator<Item = Role>) -> Option<Role> {
    // Role orders Admin < Member < Viewer, so the minimum is the strongest.
    roles.into_iter().min()
}

/// What a caller is trying to do to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read anything in the project (services, APIs, authorizations).
    Read,
    /// Create a service or an app.
    Create,
    /// Change or delete a resource created by `owner` (a service and its APIs).
    Write { owner: &'a str },
}

/// Whether `user_id` holding `role` may perform `action`.
pub fn allowed(role: Option<Role>, user_id: &str, action: Action<'_>) -> bool {
    match (role, action) {
        (None, _) => false,
        (Some(_), Action::Read) => true,
        (Some(Role::Admin), _) => true,
        (Some(Role::Member), Action::Create) => true,
        (Some(Role::Member), Action::Write { owner }) => owner == user_id,
        (Some(Role::Viewer), _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        let own = Action::Write { owner: "u1" };
        let other = Action::Write { owner: "u2" };
        assert!(allowed(Some(Role::Admin), "u1", other));
        assert!(allowed(Some(Role::Member), "u1", own));
        assert!(!allowed(Some(Role::Member), "u1", other));
        assert!(allowed(Some(Role::Member), "u1", Action::Create));
        assert!(allowed(Some(Role::Viewer), "u1", Action::Read));
        assert!(!allowed(Some(Role::Viewer), "u1", Action::Create));
        assert!(!allowed(Some(Role::Viewer), "u1", own));
        assert!(!allowed(None, "u1", Action::Read));
        assert_eq!(strongest([Role::Viewer, Role::Admin]), Some(Role::Admin));
        assert_eq!(strongest([]), None);
    }
}
