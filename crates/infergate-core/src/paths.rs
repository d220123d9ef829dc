//! Which request paths are safe to route and forward ([`path_problem`]), and who owns an
//! `api_path`. `/v1/infers/{service_id}` and everything under it belong to that
//! service; any other path belongs to the project that registered it first, and no API of
//! another project may sit at, above or below it (at segment boundaries). The store applies
//! [`check_ownership`] in the transaction that creates an API; the gateway applies
//! [`service_namespace`] when it routes, so a call under a service's namespace never reaches
//! an API of another service.

/// How many times an upstream may decode a path, as far as [`path_problem`] looks: once is
/// the rule, twice happens (a proxy and then the application), more is refused by nothing
/// we know of but costs little to cover.
const DECODINGS: usize = 3;

/// Why `path` could reach something other than what its text names once an upstream
/// normalises or decodes it (once, twice or three times), if it could:
/// - `.` and `..` segments, also with path parameters (`..;x`, which servers that strip
///   parameters before normalising, as Tomcat and Jetty do, read as `..`), and those that
///   a decoding makes (`..%3bx`, `..%3f`: a decoded `;`, `?` or `#` ends a segment's name
///   for a server that parses the decoded text again);
/// - a raw backslash, NUL or any control byte;
/// - a `%` not followed by two hex digits (`%2%65` is `%2e` to an upstream that decodes
///   twice), and IIS's `%u` escapes however they are encoded (`%25u002e`);
/// - a dot, slash, backslash or control byte that any decoding yields (`%2e`, `%2F`,
///   `%252e`, `%25%32%65`, any case);
/// - a decoding that is not UTF-8 (overlong forms such as `%c0%ae` and `%e0%80%ae`, bytes a
///   lax decoder drops or masks: `..%ff`, `%ae%ae`);
/// - text whose Unicode compatibility form (NFKC, which some servers apply; also without
///   the default-ignorable characters that NFKC_Casefold deletes) breaks any of these rules,
///   or holds a slash more: `．．`, `..；x`, `％2e`, `℀` (`a/c`), `.\u{ad}.`.
///
/// The gateway routes and forwards a path only after this check, and the management API
/// refuses an `api_path` it would fail.
pub fn path_problem(path: &str) -> Option<&'static str> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Some("the path must start with /");
    }
    // Most paths hold none of the bytes the rules below look at: one pass over the whole
    // path without an early exit (which the compiler turns into vector code) clears them.
    let suspect = |b: u8| !(0x20..0x7f).contains(&b) || b == b'\\' || b == b'%' || b == b'.';
    if !bytes.iter().fold(false, |seen, &b| seen | suspect(b)) {
        return None;
    }
    text_problem(path, b";", DECODINGS)
}

/// What [`path_problem`] refuses in a path's text, raw or as NFKC left it, with
/// `decodings` decodings still to look at: what [`plain_problem`] refuses, what the
/// decodings make, and what the text's NFKC form breaks.
fn text_problem(text: &str, ends: &[u8], decodings: usize) -> Option<&'static str> {
    if let Some(why) = plain_problem(text.as_bytes(), ends) {
        return Some(why);
    }
    if decodings > 0 && text.contains('%') {
        if let Some(why) = encoded_problem(text.as_bytes(), decodings) {
            return Some(why);
        }
    }
    if !text.is_ascii() {
        return compatibility_problem(text, decodings);
    }
    None
}

/// What [`path_problem`] refuses in text as it reads, undecoded: a backslash or control
/// byte, a `.` or `..` segment (its name ending at any of `ends`), an IIS `%u` escape.
fn plain_problem(bytes: &[u8], ends: &[u8]) -> Option<&'static str> {
    if let Some(&b) = bytes.iter().find(|&&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return Some(if b == b'\\' {
            "the path holds a backslash"
        } else {
            "the path holds a control byte"
        });
    }
    // Most paths hold no dot at all: one search, no split.
    let dot_segment = bytes.contains(&b'.')
        && bytes.split(|&b| b == b'/').any(|segment| {
            let name = segment
                .split(|b| ends.contains(b))
                .next()
                .unwrap_or(segment);
            name == b"." || name == b".."
        });
    if dot_segment {
        return Some("the path holds a . or .. segment");
    }
    let iis = bytes.windows(6).any(|w| {
        w[0] == b'%'
            && matches!(w[1], b'u' | b'U')
            && hex_at(w, 2).is_some()
            && hex_at(w, 4).is_some()
    });
    iis.then_some("the path holds an IIS %u escape")
}

/// What [`path_problem`] refuses in `text`'s NFKC form, when it differs: the form checked
/// as a path's text, and no slash more than `text` has (`℀` is `a/c`).
fn compatibility_problem(text: &str, decodings: usize) -> Option<&'static str> {
    use unicode_normalization::UnicodeNormalization;
    // Without the characters NFKC_Casefold and IDNA-style maps delete (`.\u{ad}.` is `..`).
    let compatible: String = text.nfkc().filter(|&c| !default_ignorable(c)).collect();
    if compatible == text {
        return None;
    }
    let slashes = |t: &str| t.bytes().filter(|&b| b == b'/').count();
    if slashes(&compatible) > slashes(text) {
        return Some("the path's Unicode compatibility form holds a slash more");
    }
    text_problem(&compatible, b";?#", decodings).map(|_| {
        "the path's Unicode compatibility form (NFKC) holds a dot segment, backslash, \
         control byte or encoded one"
    })
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): the soft hyphen,
/// zero-width and bidi controls, variation selectors, tags and their reserved neighbours.
fn default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00ad
            | 0x034f
            | 0x061c
            | 0x115f..=0x1160
            | 0x17b4..=0x17b5
            | 0x180b..=0x180f
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x206f
            | 0x3164
            | 0xfe00..=0xfe0f
            | 0xfeff
            | 0xffa0
            | 0xfff0..=0xfff8
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0000..=0xe0fff
    )
}

/// What decoding `bytes` (up to `decodings` times) yields that [`path_problem`] refuses.
fn encoded_problem(bytes: &[u8], decodings: usize) -> Option<&'static str> {
    let mut at = 0;
    while let Some(found) = bytes[at..].iter().position(|&b| b == b'%') {
        at += found;
        if hex_at(bytes, at + 1).is_none() {
            return Some("the path holds a % not followed by two hex digits");
        }
        at += 3;
    }
    // Bytes an escape must not write: the text around them would change what it names.
    let structural = |text: &[u8]| {
        text.iter()
            .filter(|&&b| matches!(b, b'.' | b'/' | b'\\' | 0..0x20 | 0x7f))
            .count()
    };
    let mut current = std::borrow::Cow::Borrowed(bytes);
    for left in (0..decodings).rev() {
        let decoded: Vec<u8> = percent_encoding::percent_decode(&current).collect();
        if decoded.len() == current.len() {
            // Nothing decoded.
            return None;
        }
        if structural(&decoded) > structural(&current) {
            return Some("the path holds an encoded dot, slash, backslash or control byte");
        }
        let Ok(text) = std::str::from_utf8(&decoded) else {
            return Some("the path decodes to bytes that are not UTF-8");
        };
        // A server that parses the decoded text again ends a segment's name at a `;`, and
        // its path at a `?` or `#`. Its own escapes are the next decoding's, below.
        if let Some(why) = plain_problem(&decoded, b";?#") {
            return Some(why);
        }
        if !text.is_ascii() {
            if let Some(why) = compatibility_problem(text, left) {
                return Some(why);
            }
        }
        if !decoded.contains(&b'%') {
            return None;
        }
        current = std::borrow::Cow::Owned(decoded);
    }
    None
}

/// The byte the two hex digits at `at` write, if they are there.
fn hex_at(bytes: &[u8], at: usize) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match bytes.get(at..at + 2)? {
        &[hi, lo] => Some((digit(hi)? * 16 + digit(lo)?) as u8),
        _ => None,
    }
}

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
    fn paths_that_decode_into_other_paths_are_refused_and_say_why() {
        let refused = [
            ("/a/%2e%2e/b", "encoded dot"),
            ("/a/%252e%252e/b", "encoded dot"),
            ("/a/%2%65%2%65/b", "not followed by two hex digits"),
            ("/a/%%32%65/b", "not followed by two hex digits"),
            ("/a/%25%32%65%25%32%65/b", "encoded dot"),
            ("/a/%25252f", "encoded dot, slash"),
            ("/a/%u002e", "IIS"),
            ("/a/%c0%ae%c0%ae/b", "not UTF-8"),
            ("/a/%", "not followed by two hex digits"),
            ("/a/..%3bx/b", ". or .. segment"),
            ("/a/..%253B/b", ". or .. segment"),
            ("/a/..%3f", ". or .. segment"),
            ("/a/.%3b/b", ". or .. segment"),
            ("/a/..%23x", ". or .. segment"),
            ("/a/%25u002e%25u002e/b", "IIS"),
            ("/a/%e0%80%ae%e0%80%ae/b", "not UTF-8"),
            ("/a/%f0%80%80%ae/b", "not UTF-8"),
            ("/a/%ef%bc%8e%ef%bc%8e/b", "compatibility form"),
            ("/a/\u{2025}/b", "compatibility form"),
            ("/a/%E2%80%A5", "compatibility form"),
            // Lax decoders: longer forms, unchecked continuation bytes, bytes dropped or
            // masked.
            ("/a/%f8%80%80%80%ae%f8%80%80%80%ae/b", "not UTF-8"),
            ("/a/%e0@n%e0@n/b", "not UTF-8"),
            ("/a/..%ff/b", "not UTF-8"),
            ("/a/%ae%ae/b", "not UTF-8"),
            ("/a/%25ae%25ae/b", "not UTF-8"),
            // What NFKC turns into dots, slashes, backslashes, `;`, `?`, `#` and `%`.
            ("/a/\u{fe52}\u{fe52}/b", "compatibility form"),
            ("/a/%ef%b9%92%ef%b9%92/b", "compatibility form"),
            ("/a/\u{fe30}/b", "compatibility form"),
            ("/a/\u{fe68}etc", "compatibility form"),
            ("/a/\u{2100}/b", "a slash more"),
            ("/a/..\u{ff1b}x/b", "compatibility form"),
            ("/a/..%CD%BE/b", "compatibility form"),
            ("/a/..\u{ff1f}/b", "compatibility form"),
            ("/a/..%EF%BC%83/b", "compatibility form"),
            ("/a/\u{ff05}2e\u{ff05}2e/b", "compatibility form"),
            ("/a/%EF%BC%852e%EF%BC%852e/b", "compatibility form"),
            // Default-ignorable characters between dots.
            ("/a/.\u{ad}./b", "compatibility form"),
            ("/a/.%C2%AD./b", "compatibility form"),
            ("/a/.\u{200b}./b", "compatibility form"),
            ("/a/\u{feff}./b", "compatibility form"),
            ("/a/..;x/b", ". or .. segment"),
            ("/a\\b", "backslash"),
            ("/a\u{1}", "control byte"),
            ("a", "must start with /"),
        ];
        for (path, why) in refused {
            let got = path_problem(path).unwrap_or_else(|| panic!("{path:?} passed"));
            assert!(got.contains(why), "{path:?}: {got}");
        }
        for path in [
            "/",
            "/v1/infers/s/chat/completions",
            "/a.b/..c/%41%25zz",
            "/a/%e4%bd%a0",
            "/a/\u{4f60}\u{597d}",
            "/a/%2Db",
            "/a/%3bx/b%3fc%23d",
            "/f/\u{8cc7}\u{6599}\u{ff0e}pdf",
            "/a/caf\u{e9}/caf%C3%A9",
            "/a/x\u{ad}y/.\u{ad}x",
        ] {
            assert_eq!(path_problem(path), None, "{path:?}");
        }
    }

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
