//! Who owns an `api_path`. `/v1/infers/{service_id}` and everything under it belong to that
//! service; any other path belongs to the project that registered it first, and no API of
//! another project may sit at, above or below it (at segment boundaries). The store applies
//! [`check_ownership`] in the transaction that creates an API; the gateway applies
//! [`service_namespace`] when it routes, so a call under a service's namespace never reaches
//! an API of another service.

/// Where every service's own namespace begins.
pub const INFERS_PREFIX: &str = "/v1/infers/";

/// The id of the service whose namespace (`/v1/infers/{id}`) holds `path`, if any.
pub fn service_namespace(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(INFERS_PREFIX)?;
    let id = &rest[..rest.bytes().position(|b| b == b'/').unwrap_or(rest.len())];
    (!id.is_empty()).then_some(id)
}

/// Whether `ancestor` is `path` or lies above it at a segment boundary (`/a` is above `/a/b`,
/// not above `/ab`).
pub fn is_at_or_above(ancestor: &str, path: &str) -> bool {
    let ancestor = ancestor.trim_end_matches('/');
    match path.strip_prefix(ancestor) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || ancestor.is_empty(),
        None => false,
    }
}

/// Whether two paths are the same or one lies above the other.
pub fn overlap(a: &str, b: &str) -> bool {
    is_at_or_above(a, b) || is_at_or_above(b, a)
}

/// An API path another owner holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathConflict {
    /// The path lies in another service's namespace.
    OtherService { path: String, service_id: String },
    /// Another project's API sits at, above or below the path.
    OtherProject { path: String, theirs: String },
}

impl std::fmt::Display for PathConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathConflict::OtherService { path, service_id } => write!(
                f,
                "api_path {path:?} lies under {INFERS_PREFIX}{service_id}, which belongs to service {service_id}"
            ),
            PathConflict::OtherProject { path, theirs } => write!(
                f,
                "api_path {path:?} overlaps {theirs:?}, which belongs to another project"
            ),
        }
    }
}

/// Checks that an API of `project_id`'s service `service_id` may take `path`, given the
/// paths of other projects' APIs (`(project_id, api_path)`).
pub fn check_ownership<'a>(
    (project_id, service_id): (&str, &str),
    path: &str,
    existing: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), PathConflict> {
    if let Some(owner) = service_namespace(path) {
        if owner != service_id {
            return Err(PathConflict::OtherService {
                path: path.to_owned(),
                service_id: owner.to_owned(),
            });
        }
        // A service's namespace is its own: nothing outside it can take a call made there.
        return Ok(());
    }
    for (theirs_project, theirs) in existing {
        if theirs_project != project_id
            && service_namespace(theirs).is_none()
            && overlap(path, theirs)
        {
            return Err(PathConflict::OtherProject {
                path: path.to_owned(),
                theirs: theirs.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_read_from_the_first_segment_after_the_prefix() {
        assert_eq!(service_namespace("/v1/infers/abc"), Some("abc"));
        assert_eq!(service_namespace("/v1/infers/abc/predict"), Some("abc"));
        assert_eq!(service_namespace("/v1/infers/"), None);
        assert_eq!(service_namespace("/v1/infers"), None);
        assert_eq!(service_namespace("/v1/inferso/abc"), None);
        assert_eq!(service_namespace("/models/abc"), None);
    }

    #[test]
    fn paths_overlap_at_segment_boundaries_only() {
        assert!(overlap("/a", "/a"));
        assert!(overlap("/a", "/a/b"));
        assert!(overlap("/a/b/c", "/a"));
        assert!(overlap("/", "/anything"));
        assert!(!overlap("/a", "/ab"));
        assert!(!overlap("/a/b", "/a/c"));
        assert!(overlap("/a/", "/a/b"));
    }

    #[test]
    fn ownership() {
        let mine = ("p1", "s1");
        let others = [("p2", "/models"), ("p2", "/v1/infers/s2"), ("p1", "/mine")];
        // Its own namespace is always the service's.
        assert!(check_ownership(mine, "/v1/infers/s1/x", others).is_ok());
        // Another service's namespace never is, whoever registered what.
        assert_eq!(
            check_ownership(mine, "/v1/infers/s2/predict", []),
            Err(PathConflict::OtherService {
                path: "/v1/infers/s2/predict".into(),
                service_id: "s2".into()
            })
        );
        // At, below and above another project's path.
        for path in ["/models", "/models/x", "/"] {
            assert!(
                matches!(
                    check_ownership(mine, path, others),
                    Err(PathConflict::OtherProject { .. })
                ),
                "{path}"
            );
        }
        // Beside it, or over its own project's paths, or above a namespace only.
        for path in ["/modelsx", "/mine/deeper", "/v1", "/v1/infers"] {
            assert!(check_ownership(mine, path, others).is_ok(), "{path}");
        }
    }
}
