//! The fixed vectors of spec §5.4 and property tests of sign/verify.

use super::*;
use http::{HeaderName, HeaderValue};
use proptest::prelude::*;

const KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const SECRET: &[u8] = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0";
const DATE: &str = "20240102T030405Z";
const HOST: &str = "infer.example.test";
const SERVICE_PATH: &str = "/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b";

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn verify_with(
    method: &str,
    path: &str,
    query: &str,
    hdrs: &[(String, String)],
    auth: &str,
    body: &[u8],
) -> Verdict {
    let map = header_map(hdrs);
    let hash = sha256_hex(body);
    let prepared = PreparedVerification::prepare(
        auth,
        ReceivedRequest {
            method,
            raw_path: path,
            raw_query: query,
            headers: &map,
            body_sha256: Some(&hash),
            body_is_empty: body.is_empty(),
        },
    )
    .expect("prepare");
    prepared.verify(SECRET)
}

#[test]
fn v1_get_with_query() {
    let path = format!("{SERVICE_PATH}/health");
    let query = "limit=10&b=2&a=1&a=0&name=hello%20world&flag";
    let hdrs = headers(&[("X-Sdk-Date", DATE), ("host", HOST)]);
    let signed = sign(KEY, SECRET, "GET", &path, query, &hdrs, b"");
    assert_eq!(
        signed.canonical_request,
        "GET\n/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/health/\na=0&a=1&b=2&flag=&limit=10&name=hello%20world\nhost:infer.example.test\nx-sdk-date:20240102T030405Z\n\nhost;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(signed
        .string_to_sign
        .ends_with("be6c27b6331c11d6121ddb3041ca16ce36f358475108093e6baedb9c6bf3194c"));
    let expected = "SDK-HMAC-SHA256 Access=a1b2c3d4e5f60718293a4b5c6d7e8f90, SignedHeaders=host;x-sdk-date, Signature=c6236d0ed81a7fc36c8c5e36fa766dcdf22f8bbe10dbe4b9435c26dad2285db7";
    assert_eq!(signed.authorization.header_value(), expected);
    // The server accepts both the original and the sorted query form.
    assert_eq!(
        verify_with("GET", &path, query, &hdrs, expected, b""),
        Verdict::Valid
    );
    // Names listed in another case are read as lowercase, as signers write them.
    let mixed = expected.replace(
        "SignedHeaders=host;x-sdk-date",
        "SignedHeaders=Host; X-Sdk-Date",
    );
    assert_eq!(
        verify_with("GET", &path, query, &hdrs, &mixed, b""),
        Verdict::Valid
    );
    let sorted = "a=0&a=1&b=2&flag=&limit=10&name=hello%20world";
    assert_eq!(
        verify_with("GET", &path, sorted, &hdrs, expected, b""),
        Verdict::Valid
    );
    // Core signer input as pairs gives the same canonical query.
    assert_eq!(
        canonical_query_from_pairs(&[
            ("limit", "10"),
            ("b", "2"),
            ("a", "1"),
            ("a", "0"),
            ("name", "hello world"),
            ("flag", "")
        ]),
        sorted
    );
}

#[test]
fn v2_post_json() {
    let body = "{\"inputs\":\"你好\",\"max_tokens\":16}".as_bytes();
    assert_eq!(body.len(), 35);
    assert_eq!(
        sha256_hex(body),
        "8ae1554952fd7c5cdc5282e6090401f53851f3193630e022fc5348fcc37eab88"
    );
    let hdrs = headers(&[
        ("Content-Type", "application/json"),
        ("X-Sdk-Date", DATE),
        ("host", HOST),
    ]);
    let signed = sign(KEY, SECRET, "POST", SERVICE_PATH, "", &hdrs, body);
    assert!(signed
        .string_to_sign
        .ends_with("45c8d664f7b5155056b9b4fc0094f34bed13653f41ddf40c68efcedc4361ec89"));
    let expected = "SDK-HMAC-SHA256 Access=a1b2c3d4e5f60718293a4b5c6d7e8f90, SignedHeaders=content-type;host;x-sdk-date, Signature=4dd2fc1c67b14702be341ff5f159206c918984b015056465cce9871db512114e";
    assert_eq!(signed.authorization.header_value(), expected);
    assert_eq!(
        verify_with("POST", SERVICE_PATH, "", &hdrs, expected, body),
        Verdict::Valid
    );
}

#[test]
fn v3_path_needing_encoding() {
    let path = format!("{SERVICE_PATH}/files/a%20b+c/%C3%BC~*");
    let query = "q=x/y&z=%2A&empty=";
    let hdrs = headers(&[
        ("Content-Type", "text/plain"),
        ("X-Sdk-Date", DATE),
        ("host", HOST),
    ]);
    let signed = sign(KEY, SECRET, "PUT", &path, query, &hdrs, b"hello");
    assert_eq!(
        signed.canonical_request,
        "PUT\n/v1/infers/6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b/files/a%20b%2Bc/%C3%BC~%2A/\nempty=&q=x%2Fy&z=%2A\ncontent-type:text/plain\nhost:infer.example.test\nx-sdk-date:20240102T030405Z\n\ncontent-type;host;x-sdk-date\n2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(
        signed.authorization.signature,
        "24a7ee5891f3a39b0c532d652556879a9b2c80aa2b5d9ca2c8d6a17caaa5a7fe"
    );
    assert_eq!(
        verify_with(
            "PUT",
            &path,
            query,
            &hdrs,
            &signed.authorization.header_value(),
            b"hello"
        ),
        Verdict::Valid
    );

    let hdrs_b = headers(&[
        ("Content-Type", "text/plain"),
        ("X-Sdk-Date", DATE),
        ("host", HOST),
        ("X-Sdk-Content-Sha256", UNSIGNED_PAYLOAD),
    ]);
    let signed_b = sign(KEY, SECRET, "PUT", &path, query, &hdrs_b, b"hello");
    assert_eq!(
        signed_b.authorization.header_value(),
        "SDK-HMAC-SHA256 Access=a1b2c3d4e5f60718293a4b5c6d7e8f90, SignedHeaders=content-type;host;x-sdk-content-sha256;x-sdk-date, Signature=46bb16bd373901fbd50e37f4d6c3f4b3b5d69f61a55070dcbf893bc46a692b08"
    );
    // UNSIGNED-PAYLOAD: the server does not need the body hash at all.
    let map = header_map(&hdrs_b);
    let authorization = signed_b.authorization.header_value();
    let prepared = PreparedVerification::prepare(
        &authorization,
        ReceivedRequest {
            method: "PUT",
            raw_path: &path,
            raw_query: query,
            headers: &map,
            body_sha256: None,
            body_is_empty: false,
        },
    )
    .expect("prepare");
    assert_eq!(prepared.verify(SECRET), Verdict::Valid);
}

#[test]
fn empty_body_with_unsigned_header_accepts_both_signers() {
    let hdrs = headers(&[
        ("Content-Type", "text/plain"),
        ("X-Sdk-Date", DATE),
        ("host", HOST),
        ("X-Sdk-Content-Sha256", UNSIGNED_PAYLOAD),
    ]);
    let names = "content-type;host;x-sdk-content-sha256;x-sdk-date";
    for sig in [
        "79a9abf419274ae43550a3b2a39189b13814eea504b63b343edd047288f051f4",
        "dfe466c9efdefcfa873ba50d45da4544eacfd94a674b08edc2bdb1056bf73ca1",
    ] {
        let auth = format!("SDK-HMAC-SHA256 Access={KEY}, SignedHeaders={names}, Signature={sig}");
        assert_eq!(
            verify_with("GET", "/v1/x", "", &hdrs, &auth, b""),
            Verdict::Valid
        );
    }
    let signed = sign(KEY, SECRET, "GET", "/v1/x", "", &hdrs, b"");
    assert_eq!(
        signed.authorization.signature,
        "dfe466c9efdefcfa873ba50d45da4544eacfd94a674b08edc2bdb1056bf73ca1"
    );
}

#[test]
fn underscore_headers_of_both_signers() {
    let hdrs = headers(&[("X-Sdk-Date", DATE), ("host", HOST), ("X_Trace", "1")]);
    // Core signer skips the underscore header; the server uses the client's list.
    let core = format!("SDK-HMAC-SHA256 Access={KEY}, SignedHeaders=host;x-sdk-date, Signature=2226fb6b0eaba2b152d410e529dfcd0842baecd3c6cfde55522114465e6134ae");
    assert_eq!(
        verify_with("GET", "/v1/x", "", &hdrs, &core, b""),
        Verdict::Valid
    );
    let apig = sign(KEY, SECRET, "GET", "/v1/x", "", &hdrs, b"");
    assert_eq!(
        apig.authorization.header_value(),
        format!("SDK-HMAC-SHA256 Access={KEY}, SignedHeaders=host;x-sdk-date;x_trace, Signature=4159a724871c88d5253a5930fdee85dd4d14ddafd85f29eba1a0920191b348f4")
    );
}

#[test]
fn edge_canonicalisation() {
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_query("q=a+b&k=%7e"), "k=~&q=a%2Bb");
    assert_eq!(canonical_uri("/v1/a%2Fb"), "/v1/a/b/");
    assert_eq!(canonical_query(""), "");
    assert_eq!(canonical_query("=x&a"), "a=");
    let hdrs = headers(&[("X-Sdk-Date", DATE), ("host", "infer.example.test:8443")]);
    let signed = sign(KEY, SECRET, "GET", "/", "", &hdrs, b"");
    assert!(signed
        .canonical_request
        .contains("\nhost:infer.example.test:8443\n"));
}

#[test]
fn public_guide_example() {
    let hdrs = headers(&[
        ("Content-Type", "application/json"),
        ("X-Sdk-Date", "20191115T033655Z"),
        ("host", "service.region.example.com"),
    ]);
    let signed = sign(
        "QTWAOYTTINDUT2QVKYUC",
        b"MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
        "GET",
        "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
        "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        &hdrs,
        b"",
    );
    assert!(signed
        .string_to_sign
        .ends_with("b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"));
    assert_eq!(
        signed.authorization.signature,
        "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    );
}

#[test]
fn authorization_parsing_rules() {
    assert_eq!(
        Authorization::parse("Basic abc"),
        Err(SignError::WrongAlgorithm)
    );
    assert_eq!(
        Authorization::parse("SDK-HMAC-SHA256 SignedHeaders=host, Signature=ab"),
        Err(SignError::MissingAccess)
    );
    assert_eq!(
        Authorization::parse("SDK-HMAC-SHA256 Access=k,Signature=ab"),
        Err(SignError::MissingSignedHeaders)
    );
    let parsed =
        Authorization::parse("SDK-HMAC-SHA256 Access=k,SignedHeaders=Host;X-Sdk-Date,Signature=ab")
            .expect("parse");
    assert_eq!(parsed.signed_headers, vec!["host", "x-sdk-date"]);
    assert!(!format!("{parsed:?}").contains("ab\""));
}

#[test]
fn date_rules() {
    let signed_at = parse_sdk_date(DATE).expect("date");
    assert_eq!(format_sdk_date(signed_at), DATE);
    assert!(parse_sdk_date("2024-01-02T03:04:05Z").is_err());
    let fifteen = signed_at + chrono::Duration::minutes(15);
    let sixteen = signed_at + chrono::Duration::minutes(16);
    assert!(date_within_skew(signed_at, fifteen));
    assert!(!date_within_skew(signed_at, sixteen));
    assert!(!date_within_skew(sixteen, signed_at));
}

#[test]
fn missing_signed_header_is_refused() {
    let hdrs = headers(&[("X-Sdk-Date", DATE), ("host", HOST)]);
    let map = header_map(&hdrs);
    let auth = format!(
        "SDK-HMAC-SHA256 Access={KEY}, SignedHeaders=content-type;host;x-sdk-date, Signature=00"
    );
    let err = PreparedVerification::prepare(
        &auth,
        ReceivedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &map,
            body_sha256: None,
            body_is_empty: true,
        },
    )
    .expect_err("content-type is absent");
    assert_eq!(err, SignError::MissingSignedHeader("content-type".into()));
    let no_date = format!("SDK-HMAC-SHA256 Access={KEY}, SignedHeaders=host, Signature=00");
    let err = PreparedVerification::prepare(
        &no_date,
        ReceivedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &map,
            body_sha256: None,
            body_is_empty: true,
        },
    )
    .expect_err("date not signed");
    assert_eq!(err, SignError::DateNotSigned);
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    header: (String, String),
    body: Vec<u8>,
}

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        prop::collection::vec("[a-zA-Z0-9 ~*+%._-]{1,8}", 0..4),
        prop::collection::vec(("[a-z]{1,4}", "[a-zA-Z0-9 /+*=]{0,6}"), 0..4),
        ("x-[a-z]{1,6}", "[a-zA-Z0-9]{1,10}"),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(method, segments, query, header, body)| Req {
            method: method.to_string(),
            segments,
            query,
            header,
            body,
        })
}

fn render(req: &Req) -> (String, String, Vec<(String, String)>) {
    let path = format!(
        "/{}",
        req.segments
            .iter()
            .map(|s| encode(s.as_bytes()))
            .collect::<Vec<_>>()
            .join("/")
    );
    let query = req
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_bytes()), encode(v.as_bytes())))
        .collect::<Vec<_>>()
        .join("&");
    let hdrs = vec![
        ("X-Sdk-Date".to_string(), DATE.to_string()),
        ("host".to_string(), HOST.to_string()),
        req.header.clone(),
    ];
    (path, query, hdrs)
}

proptest! {
    #[test]
    fn signed_requests_verify(req in req_strategy()) {
        let (path, query, hdrs) = render(&req);
        let signed = sign(KEY, SECRET, &req.method, &path, &query, &hdrs, &req.body);
        let auth = signed.authorization.header_value();
        prop_assert_eq!(verify_with(&req.method, &path, &query, &hdrs, &auth, &req.body), Verdict::Valid);
    }

    #[test]
    fn any_single_mutation_fails(req in req_strategy(), which in 0usize..5, byte in any::<u8>()) {
        let (path, query, hdrs) = render(&req);
        let signed = sign(KEY, SECRET, &req.method, &path, &query, &hdrs, &req.body);
        let auth = signed.authorization.header_value();
        let mut m_method = req.method.clone();
        let mut m_path = path.clone();
        let mut m_query = query.clone();
        let mut m_hdrs = hdrs.clone();
        let mut m_body = req.body.clone();
        match which {
            0 => m_method = if req.method == "GET" { "POST".into() } else { "GET".into() },
            1 => m_path.push_str("/x"),
            2 => m_query = if query.is_empty() { "z=1".into() } else { format!("{query}&zz=1") },
            3 => m_hdrs[2].1.push('Z'),
            _ => m_body.push(byte),
        }
        prop_assert_ne!(
            verify_with(&m_method, &m_path, &m_query, &m_hdrs, &auth, &m_body),
            Verdict::Valid
        );
    }

    /// The copy-through paths for plain paths and queries give what decoding and encoding give.
    #[test]
    fn canonical_fast_paths_agree(path in "[a-zA-Z0-9/._~%+ -]{0,24}", query in "[a-zA-Z0-9&=._~%+ -]{0,24}") {
        let mut fast = String::new();
        push_canonical_uri(&mut fast, &path);
        prop_assert_eq!(fast, canonical_uri(&path));
        let mut fast = String::new();
        push_canonical_query(&mut fast, &query);
        prop_assert_eq!(fast, canonical_query(&query));
    }

    /// The trim that skips values with visible ends trims as `str::trim` does.
    #[test]
    fn trim_is_str_trim(text in "[ \t\r\n\u{b}\u{c}\u{85}\u{a0}\u{3000}a-z=\u{1}\u{7f}é]{0,8}") {
        prop_assert_eq!(trim(&text), text.trim());
    }

    /// Only the exact lowercase hex of the signature is accepted.
    #[test]
    fn signature_must_be_exact_lowercase_hex(req in req_strategy(), upper in 0usize..64) {
        let (path, query, hdrs) = render(&req);
        let signed = sign(KEY, SECRET, &req.method, &path, &query, &hdrs, &req.body);
        let mut auth = signed.authorization.clone();
        let mut chars: Vec<char> = auth.signature.chars().collect();
        let letters: Vec<usize> = (0..chars.len()).filter(|&i| chars[i].is_ascii_alphabetic()).collect();
        if letters.is_empty() {
            return Ok(());
        }
        let at = letters[upper % letters.len()];
        chars[at] = chars[at].to_ascii_uppercase();
        auth.signature = chars.into_iter().collect();
        prop_assert_ne!(
            verify_with(&req.method, &path, &query, &hdrs, &auth.header_value(), &req.body),
            Verdict::Valid
        );
    }

    /// The digit-by-digit date reader agrees with the general parser.
    #[test]
    fn sdk_dates_parse_alike(text in "[0-9]{8}T[0-9]{6}Z|[0-9T:Z -]{0,18}") {
        let general = NaiveDateTime::parse_from_str(text.trim(), SDK_DATE_FORMAT)
            .map(|naive| naive.and_utc())
            .ok();
        prop_assert_eq!(parse_sdk_date(&text).ok(), general);
    }
}

/// The plain reading of an `Authorization` value's items, to check the byte scanner against.
fn split_reference(rest: &str) -> (&str, &str, &str) {
    let (mut access, mut signed, mut signature) = ("", "", "");
    for item in rest.split(',') {
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "Access" => access = val.trim(),
            "SignedHeaders" => signed = val.trim(),
            "Signature" => signature = val.trim(),
            _ => {}
        }
    }
    (access, signed, signature)
}

proptest! {
    #[test]
    fn authorization_items_split_as_read_plainly(
        items in proptest::collection::vec(
            (
                prop_oneof![Just("Access"), Just("SignedHeaders"), Just("Signature"), Just(" Access "), Just("x"), Just("")],
                prop_oneof![Just("="), Just(" = "), Just("")],
                "[a-z0-9;= é]{0,8}",
            ),
            0..6,
        ),
        trailing_comma in any::<bool>(),
    ) {
        let mut rest = String::from(" ");
        for (i, (key, eq, val)) in items.iter().enumerate() {
            if i > 0 {
                rest.push(',');
            }
            rest.push_str(key);
            rest.push_str(eq);
            rest.push_str(val);
        }
        if trailing_comma {
            rest.push(',');
        }
        let expected = split_reference(&rest);
        let value = format!("{ALGORITHM}{rest}");
        match AuthorizationParts::parse(&value) {
            Ok(found) => prop_assert_eq!(
                (found.access, found.signed_headers, found.signature),
                expected
            ),
            Err(_) => prop_assert!(expected.0.is_empty() || expected.1.is_empty() || expected.2.is_empty()),
        }
    }
}

#[test]
fn sha256_hex_is_lowercase_hex_of_the_digest() {
    assert_eq!(sha256_hex(b""), EMPTY_BODY_SHA256);
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_signature_matches_only_its_own_lowercase_hex() {
    let expected: [u8; 32] = std::array::from_fn(|i| (i * 37 + 11) as u8);
    let text = hex::encode(expected);
    assert!(signature_matches(&expected, text.as_bytes()));
    for at in 0..text.len() {
        let mut other = text.clone().into_bytes();
        other[at] = if other[at] == b'0' { b'1' } else { b'0' };
        assert!(!signature_matches(&expected, &other), "differs at {at}");
    }
    assert!(!signature_matches(
        &expected,
        text.to_uppercase().as_bytes()
    ));
    assert!(!signature_matches(&expected, &text.as_bytes()[..63]));
    assert!(!signature_matches(&expected, format!("{text}0").as_bytes()));
    assert!(!signature_matches(&expected, b""));
}

#[test]
fn the_plain_bytes_are_those_encoding_keeps() {
    for b in 0..=255u8 {
        let kept = encode(&[b]) == (b as char).to_string();
        assert_eq!(
            all_plain(std::str::from_utf8(&[b]).unwrap_or("%"), 0),
            kept && b.is_ascii(),
            "{b:#x}"
        );
    }
    assert!(all_plain("/a/b-c_d.e~f/", PATH_SEP) && !all_plain("/a&b", PATH_SEP));
    assert!(all_plain("a=1&b=2", QUERY_SEP) && !all_plain("a/b", QUERY_SEP));
}

#[test]
fn hex_digits_are_lowercase_hex() {
    let bytes: Vec<u8> = (0..=255).collect();
    let digits: [u8; 512] = hex_digits(&bytes);
    assert_eq!(digits.as_slice(), hex::encode(&bytes).as_bytes());
    assert_eq!(hex_string(&bytes), hex::encode(&bytes));
    let short: [u8; 4] = hex_digits(&[0xab]);
    assert_eq!(&short, b"ab\0\0");
}

/// A declared `X-Sdk-Content-Sha256` is believed only when it is the hash of the body
/// received: another body (or none) under a declared hash is refused before any key is
/// looked up, signed or not; `UNSIGNED-PAYLOAD` declares no hash.
#[test]
fn a_declared_body_hash_must_be_the_bodys() {
    let path = format!("{SERVICE_PATH}/x");
    let prepare = |declared: &str, body: &[u8]| {
        let hdrs = headers(&[
            ("X-Sdk-Date", DATE),
            ("host", HOST),
            ("X-Sdk-Content-Sha256", declared),
        ]);
        let signed = sign(KEY, SECRET, "POST", &path, "", &hdrs, b"meant");
        let map = header_map(&hdrs);
        let hash = sha256_hex(body);
        PreparedVerification::prepare(
            &signed.authorization.header_value(),
            ReceivedRequest {
                method: "POST",
                raw_path: &path,
                raw_query: "",
                headers: &map,
                body_sha256: Some(&hash),
                body_is_empty: body.is_empty(),
            },
        )
        .map(|p| p.verify(SECRET))
    };
    let meant = sha256_hex(b"meant");
    assert_eq!(prepare(&meant, b"meant"), Ok(Verdict::Valid));
    assert_eq!(prepare(&meant.to_uppercase(), b"meant"), Ok(Verdict::Valid));
    assert_eq!(prepare(&meant, b"other"), Err(SignError::BodyHashMismatch));
    assert_eq!(prepare(&meant, b""), Err(SignError::BodyHashMismatch));
    assert!(prepare(UNSIGNED_PAYLOAD, b"other").is_ok());
}

proptest! {
    /// A body hashed piece by piece, cut anywhere, has the digest of the whole.
    #[test]
    fn a_body_hashed_in_pieces_is_hashed_whole(
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut hasher = BodyHasher::default();
        let mut from = 0;
        for cut in cuts.into_iter().chain([body.len()]) {
            hasher.update(&body[from..cut]);
            from = cut;
        }
        prop_assert_eq!(hasher.finish_hex(), sha256_hex(&body));
    }
}
