use super::*;
use proptest::prelude::*;

#[test]
fn client_addresses_of_every_width_are_written_as_displayed() {
    for text in [
        "0.0.0.0",
        "9.10.99.100",
        "255.255.255.255",
        "127.0.0.1",
        "::",
        "::1",
        "::ffff:255.255.255.255",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        let ip: IpAddr = text.parse().expect("address");
        assert_eq!(ip_header_value(ip).as_bytes(), text.as_bytes());
    }
}

#[test]
fn special_names_are_known_in_any_case_and_with_underscores() {
    for (name, kind) in SPECIAL {
        assert_eq!(named(name.as_bytes()), kind, "{name}");
        assert_eq!(named(name.to_ascii_uppercase().as_bytes()), kind, "{name}");
        let underscored = name.replace('-', "_");
        assert_eq!(named(underscored.as_bytes()), kind, "{underscored}");
    }
    for other in [
        "accept",
        "user-agent",
        "x-sdk-date",
        "x-forwarded",
        "x-forwarded-",
        "",
        "hosts",
        "x-app-idx",
    ] {
        assert_eq!(named(other.as_bytes()), Named::Other, "{other}");
    }
    for forwarding in [
        "X-Forwarded-Port",
        "x_forwarded_prefix",
        "X-FORWARDED-SERVER",
    ] {
        assert_eq!(
            named(forwarding.as_bytes()),
            Named::GatewaySet,
            "{forwarding}"
        );
    }
    // Every name with one byte changed, to any value, is told as a comparison of the whole
    // name in any case, `_` read as `-`, tells it (a carriage return folds to `-` under bit
    // 0x20: it must not match).
    let by_comparison = |name: &[u8]| {
        let dashed: Vec<u8> = name
            .iter()
            .map(|&b| if b == b'_' { b'-' } else { b })
            .collect();
        if let Some((_, kind)) = SPECIAL
            .iter()
            .find(|(n, _)| dashed.eq_ignore_ascii_case(n.as_bytes()))
        {
            return *kind;
        }
        if dashed.len() > FORWARDED_PREFIX.len()
            && dashed[..FORWARDED_PREFIX.len()].eq_ignore_ascii_case(FORWARDED_PREFIX)
        {
            return Named::GatewaySet;
        }
        Named::Other
    };
    for (name, _) in SPECIAL {
        for at in 0..name.len() {
            for byte in 0..=255u8 {
                let mut other = name.as_bytes().to_vec();
                other[at] = byte;
                let want = by_comparison(&other);
                assert_eq!(named(&other), want, "{name} with {byte:#x} at {at}");
            }
        }
    }
    assert!(named(b"Transfer-Encoding") == Named::Hop && named(b"upgrade") != Named::Hop);
}

#[test]
fn recognised_credentials_and_gateway_headers_never_pass() {
    for name in [
        "x-apig-appcode",
        "X_Apig_AppCode",
        "apikey",
        "x-auth-token",
        "X_AUTH_TOKEN",
        "x-app-id",
        "x_api_id",
        "X-User-Id",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
        "x-real-ip",
        "x_real_ip",
        "x-request-id",
        "content-length",
        "content_length",
        "transfer-encoding",
        "transfer_encoding",
        "host",
        "connection",
        "proxy-authorization",
    ] {
        assert!(
            !forwards_header(named(name.as_bytes()), b"x", false),
            "{name} passes"
        );
    }
    let authorization = named(b"Authorization");
    for signed in [
        "SDK-HMAC-SHA256 Access=k, SignedHeaders=host, Signature=00",
        "sdk-hmac-sha256 Access=k",
        "  SDK-HMAC-SHA256",
    ] {
        assert!(
            !forwards_header(authorization, signed.as_bytes(), false),
            "{signed}"
        );
    }
    for other in ["Bearer sk-model-key", "Basic dTpw", "SDK-HMAC", ""] {
        assert!(
            forwards_header(authorization, other.as_bytes(), false),
            "{other}"
        );
    }
    assert!(forwards_header(named(b"upgrade"), b"websocket", true));
    assert!(!forwards_header(named(b"upgrade"), b"websocket", false));
    assert!(forwards_header(named(b"accept"), b"*/*", false));
}

#[test]
fn only_websocket_handshakes_switch() {
    let map = |pairs: &[(&'static str, &str)]| {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_str(value).expect("value"));
        }
        map
    };
    // RFC 6455 §1.3's example.
    let key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let version = ("sec-websocket-version", "13");
    let accept = |upgrade: &[&str]| {
        let mut pairs: Vec<(&'static str, &str)> =
            upgrade.iter().map(|u| ("upgrade", *u)).collect();
        pairs.extend([key, version]);
        websocket_accept(&map(&pairs))
    };
    for allowed in [
        &["websocket"][..],
        &["WebSocket"],
        &[" websocket "],
        &["websocket", "WEBSOCKET"],
        &["websocket,"],
    ] {
        assert_eq!(
            accept(allowed).as_ref().map(|a| &a[..]),
            Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..]),
            "{allowed:?}"
        );
    }
    for refused in [
        &[][..],
        &[""],
        &[" , "],
        &["h2c"],
        &["H2C"],
        &["h2c, websocket"],
        &["websocket, h2c"],
        &["websocket", "h2c"],
        &["websocket/13"],
        &["HTTP/2.0"],
        &["TLS/1.2"],
        &["websocketx"],
        &["web socket"],
    ] {
        assert_eq!(accept(refused), None, "{refused:?}");
    }
    // Without a well-formed key, or with another version, it is no opening handshake.
    let upgrade = ("upgrade", "websocket");
    for pairs in [
        &[upgrade, version][..],
        &[upgrade, key],
        &[upgrade, key, ("sec-websocket-version", "8")],
        &[upgrade, key, version, ("sec-websocket-version", "13")],
        &[upgrade, key, key, version],
        &[upgrade, ("sec-websocket-key", "c2hvcnQ="), version],
        &[
            upgrade,
            ("sec-websocket-key", "not base64 at all!!!!!!!"),
            version,
        ],
    ] {
        assert_eq!(websocket_accept(&map(pairs)), None, "{pairs:?}");
    }
    let want = accept(&["websocket"]).expect("accept");
    let answer = |pairs: &[(&'static str, &str)]| websocket_switched(&map(pairs), &want);
    assert!(answer(&[
        ("upgrade", "websocket"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    ]));
    for wrong in [
        &[("upgrade", "websocket")][..],
        &[
            ("upgrade", "h2c"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ],
        &[("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")],
        &[
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOp="),
        ],
        &[
            ("upgrade", "websocket"),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ],
    ] {
        assert!(!answer(wrong), "{wrong:?}");
    }
    assert_eq!(named(b"HTTP2-Settings"), Named::Hop);
    assert_eq!(named(b"http2_settings"), Named::Hop);
    assert_eq!(named(b"http3-settings"), Named::Other);
}

#[test]
fn connection_removes_only_what_the_client_could_leave_out() {
    for protected in [
        "content-length",
        "transfer-encoding",
        "host",
        "x-request-id",
        "x-forwarded-for",
        "x-app-id",
        "x-apig-appcode",
    ] {
        assert!(
            !removable_by_connection(named(protected.as_bytes())),
            "{protected}"
        );
    }
    assert!(removable_by_connection(named(b"x-secret-hop")));
    assert!(removable_by_connection(named(b"authorization")));
}

/// The framing of an HTTP/2 request's lines (where `Host` is optional; an HTTP/1.1 one
/// needs it, below).
fn framing(lines: &[(&str, &str)]) -> Result<RequestFraming, GatewayError> {
    request_framing(
        Version::Http2,
        lines.iter().map(|(n, v)| (*n, v.as_bytes())),
    )
}

#[test]
fn an_http11_request_has_one_host_that_is_a_host_and_port() {
    let http11 = |lines: &[(&str, &str)]| {
        request_framing(
            Version::Http11,
            lines.iter().map(|(n, v)| (*n, v.as_bytes())),
        )
    };
    assert!(matches!(http11(&[]), Err(GatewayError::Malformed(_))));
    assert!(matches!(
        http11(&[("Content-Length", "0")]),
        Err(GatewayError::Malformed(_))
    ));
    assert!(matches!(
        request_framing(Version::Http10, std::iter::empty()),
        Ok(RequestFraming::None)
    ));
    for host in [
        "gw",
        "example.com",
        "example.com:8080",
        "127.0.0.1:80",
        "[::1]",
        "[::1]:8443",
        "xn--bcher-kva.example",
        "host:",
        "a:65535",
        "[::ffff:127.0.0.1]:1",
        "[fe80::1]",
        "A.B",
        "a.b.",
        "under_score.example",
    ] {
        assert_eq!(
            http11(&[("Host", host)]),
            Ok(RequestFraming::None),
            "{host}"
        );
        assert!(is_host(host.as_bytes()), "{host}");
    }
    let longest = "a".repeat(MAX_HOST_NAME);
    assert!(is_host(longest.as_bytes()));
    assert!(is_host(format!("{longest}:443").as_bytes()));
    assert!(!is_host(format!("{longest}a").as_bytes()));
    for host in [
        "evil.example/path",
        "user@host",
        "a b",
        "a\\b",
        "a?b",
        "a#b",
        "%2F",
        "evil%2eexample",
        "[::1",
        "[]",
        "[::1]x",
        "[::1]:8a",
        "host:80:80",
        "host:8a",
        "\"quoted\"",
        "a<b>",
        "a\tb",
        "ex\u{e4}mple",
        "[::1/x]",
        "[::1]:80/x",
        "",
        " ",
        ":",
        ":80",
        "[zz]:1",
        "[zz!$]:80",
        "[::1%25eth0]",
        "[v1.]",
        "[v.x]",
        "a:65536",
        "a:99999999999999999999999",
        "a:000080",
        "x[%2f%40evil]",
        "evil.com[x]y",
        "a,b",
        "a;b=c",
        "a'b",
        "a!b",
        "[v1.fe80::a+en1]",
        "[v1.x]",
    ] {
        assert!(!is_host(host.as_bytes()), "{host}");
        assert!(
            matches!(http11(&[("Host", host)]), Err(GatewayError::Malformed(_))),
            "{host}"
        );
        assert!(
            matches!(framing(&[("Host", host)]), Err(GatewayError::Malformed(_))),
            "HTTP/2 {host}"
        );
    }
}

#[test]
fn framing_follows_rfc_9112_and_refuses_every_ambiguity() {
    assert_eq!(framing(&[]), Ok(RequestFraming::None));
    assert_eq!(
        framing(&[("Content-Length", "5")]),
        Ok(RequestFraming::Length(5))
    );
    assert_eq!(
        framing(&[("content-length", "5"), ("Content-Length", " 5 ")]),
        Ok(RequestFraming::Length(5))
    );
    assert_eq!(
        framing(&[("Transfer-Encoding", "Chunked")]),
        Ok(RequestFraming::Chunked)
    );
    // Names that only look like framing headers frame nothing (and never reach upstream).
    assert_eq!(
        framing(&[("Content_Length", "5"), ("Transfer_Encoding", "chunked")]),
        Ok(RequestFraming::None)
    );
    for refused in [
        &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")][..],
        &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
        &[("Content-Length", "5"), ("Content-Length", "6")],
        &[("Content-Length", "5, 5")],
        &[("Content-Length", "+5")],
        &[("Content-Length", "-1")],
        &[("Content-Length", "0x5")],
        &[("Content-Length", "")],
        &[("Content-Length", "1234567890123456")],
        &[("Transfer-Encoding", "gzip")],
        &[("Transfer-Encoding", "chunked, gzip")],
        &[("Transfer-Encoding", "gzip, chunked")],
        &[("Transfer-Encoding", "chunked, chunked")],
        &[
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ],
        &[("Transfer-Encoding", "xchunked")],
        &[("Transfer-Encoding", "chunked;q=1")],
        &[("Transfer-Encoding", "")],
        &[("Transfer-Encoding", " , ")],
        &[("Host", "a"), ("host", "b")],
    ] {
        let got = framing(refused);
        assert!(
            matches!(got, Err(GatewayError::Malformed(_))),
            "{refused:?}: {got:?}"
        );
    }
    assert!(matches!(
        request_framing(Version::Http10, [("Transfer-Encoding", &b"chunked"[..])]),
        Err(GatewayError::Malformed(_))
    ));
}

#[test]
fn the_gateway_writes_the_forwarded_length() {
    assert_eq!(forwarded_length(RequestFraming::None, Some(0)), None);
    assert_eq!(
        forwarded_length(RequestFraming::Length(0), Some(0)),
        Some(0)
    );
    assert_eq!(
        forwarded_length(RequestFraming::Length(5), Some(5)),
        Some(5)
    );
    // A chunked body read whole (to hash it) goes with its length.
    assert_eq!(forwarded_length(RequestFraming::Chunked, Some(7)), Some(7));
    assert_eq!(forwarded_length(RequestFraming::Chunked, None), None);
}

/// Hostile paths: each one is refused before routing.
pub(crate) const HOSTILE_PATHS: &[&str] = &[
    "/v1/infers/s/../../internal",
    "/v1/infers/s/..",
    "/v1/infers/s/./x",
    "/v1/infers/s/.",
    "/v1/infers/s/..;/internal",
    "/v1/infers/s/..;jsessionid=x/internal",
    "/v1/infers/s/.;x/y",
    "/..;",
    "/v1/infers/s/%2e%2e/%2e%2e/internal",
    "/v1/infers/s/%2E%2E/internal",
    "/v1/infers/s/.%2e/internal",
    "/v1/infers/s/%2e./internal",
    "/v1/infers/s%2f..%2finternal",
    "/v1/infers/s%2F..%2Finternal",
    "/v1/infers/s/%5c..%5cinternal",
    "/v1/infers/s/..\\internal",
    "/v1/infers/s\\x",
    "/v1/infers/s/%00",
    "/v1/infers/s/%252e%252e/internal",
    "/v1/infers/s/..%252Finternal",
    "/v1/infers/s/%255c",
    "/v1/infers/s/%2500",
    // Escapes that only a second decoding completes, and a third.
    "/v1/infers/s/%2%65%2%65/internal",
    "/v1/infers/s/%%32%65%%32%65/internal",
    "/v1/infers/s/%25%32%65%25%32%65/internal",
    "/v1/infers/s/%25252e%25252e/internal",
    "/v1/infers/s/..%25%32%66internal",
    // Escapes that are not two hex digits, and overlong UTF-8 dots and slashes.
    "/v1/infers/s/%u002e%u002e/internal",
    "/v1/infers/s/%",
    "/v1/infers/s/%2",
    "/v1/infers/s/%zz",
    "/v1/infers/s/%c0%ae%c0%ae/internal",
    "/v1/infers/s/..%c0%afinternal",
    "/v1/infers/s/%C1%9C",
    // Segments that a decoded `;`, `?` or `#` ends, IIS escapes encoded, longer overlong
    // UTF-8, and what NFKC turns into dots.
    "/v1/infers/s/..%3bx/internal",
    "/v1/infers/s/..%253B/internal",
    "/v1/infers/s/..%3f",
    "/v1/infers/s/..%23",
    "/v1/infers/s/%25u002e%25u002e/internal",
    "/v1/infers/s/%e0%80%ae%e0%80%ae/internal",
    "/v1/infers/s/%f0%80%80%ae/internal",
    "/v1/infers/s/%ef%bc%8e%ef%bc%8e/internal",
    "/v1/infers/s/\u{2025}/internal",
    "/v1/infers/s/\u{0}",
    "/v1/infers/s/\t",
    "/v1/infers/s/\u{7f}",
    "v1/infers/s",
    "",
];

#[test]
fn hostile_paths_are_refused_and_plain_ones_pass() {
    for path in HOSTILE_PATHS {
        assert!(
            matches!(check_path(path), Err(GatewayError::BadRequest(_))),
            "{path:?} passed"
        );
    }
    for path in [
        "/",
        "/v1/infers/s",
        "/v1/infers/s/chat/completions",
        "/v1/infers/s/a.b/..c/c../...",
        "/v1/infers/s/a;b/..x;y/;..",
        "/v1/infers/s/%20x%41",
        "/v1/infers/s/%25%2541%252",
        "/v1/infers/s//x",
        "/v1/infers/s/%25zz",
        "/v1/infers/s/a%2Db%e4%bd%a0",
    ] {
        assert_eq!(check_path(path), Ok(()), "{path:?}");
    }
}

/// Percent-decodes `%XX` sequences (others kept), as an upstream would.
fn decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// A path that passes names, once an upstream decodes it once, twice or three times, no
    /// segment that climbs or stays, no backslash and no control byte: nothing outside the
    /// text it shows. Many cases: an escape that only a later decoding completes takes
    /// several pieces in the right order.
    #[test]
    fn an_accepted_path_decodes_to_what_it_shows(
        segments in proptest::collection::vec(
            prop_oneof![
                // Pieces of escapes that only a later decoding completes.
                8 => "(%|%2|%25|%32|%65|e|\\.|%c0|%ae|%3b|%3f|%23|;){1,6}",
                1 => Just(".".to_owned()), 1 => Just("..".to_owned()), 1 => Just("%2e".to_owned()),
                1 => Just("%2E%2e".to_owned()), 1 => Just("%2f".to_owned()), 1 => Just("%5C".to_owned()),
                1 => Just("\\".to_owned()), 1 => Just("%00".to_owned()), 1 => Just("%".to_owned()),
                1 => Just("..;".to_owned()), 1 => Just(".;x".to_owned()), 1 => Just("%252e".to_owned()),
                1 => Just("%252F".to_owned()), 1 => Just("%25".to_owned()),
                1 => "[a-z.%0-9;]{0,4}",
            ],
            0..6,
        )
    ) {
        let path = format!("/{}", segments.join("/"));
        if check_path(&path).is_ok() {
            let once = decode(&path);
            // And as upstreams that decode twice or three times read it.
            let twice = decode(&String::from_utf8_lossy(&once));
            let thrice = decode(&String::from_utf8_lossy(&twice));
            for decoded in [once, twice, thrice] {
                prop_assert!(!decoded.iter().any(|&b| b == b'\\' || b < 0x20));
                for segment in decoded.split(|&b| b == b'/') {
                    // As a server that strips path parameters reads it, or parses the
                    // decoded text again.
                    let name = segment
                        .split(|&b| matches!(b, b';' | b'?' | b'#'))
                        .next()
                        .unwrap_or(segment);
                    prop_assert!(name != b"." && name != b"..", "{path:?}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The client's address in a header is its `Display` text, for any address.
    #[test]
    fn a_client_address_is_written_as_displayed(v4 in any::<u32>(), v6 in any::<u128>()) {
        for ip in [
            IpAddr::from(std::net::Ipv4Addr::from(v4)),
            IpAddr::from(std::net::Ipv6Addr::from(v6)),
            IpAddr::from(std::net::Ipv4Addr::from(v4).to_ipv6_mapped()),
        ] {
            let (written, displayed) = (ip_header_value(ip), ip.to_string());
            prop_assert_eq!(written.as_bytes(), displayed.as_bytes());
        }
    }

    /// Framing is decided for any header lines without a panic, and agrees with a plain
    /// reading of RFC 9112 §6.
    #[test]
    fn framing_of_any_lines(
        lines in proptest::collection::vec(
            (
                prop_oneof![
                    Just("Content-Length"), Just("content-length"), Just("Transfer-Encoding"),
                    Just("transfer-encoding"), Just("Host"), Just("X-Other"),
                    Just("Content_Length"),
                ],
                prop_oneof![
                    Just("0".to_owned()), Just("5".to_owned()), Just("05".to_owned()),
                    Just("chunked".to_owned()), Just("gzip".to_owned()),
                    Just("chunked, gzip".to_owned()), Just(String::new()), Just("1,1".to_owned()),
                    Just(" 7 ".to_owned()), "[0-9a-z, ]{0,6}",
                ],
            ),
            0..5,
        )
    ) {
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let got = framing(&lines);
        let of = |name: &str| -> Vec<&str> {
            lines.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect()
        };
        let lengths = of("content-length");
        let codings = of("transfer-encoding");
        let hosts = of("host");
        let numbers: Vec<Option<u64>> = lengths.iter().map(|v| {
            let v = v.trim();
            (!v.is_empty() && v.len() <= 15 && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse().ok()).flatten()
        }).collect();
        let tokens: Vec<String> = codings
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        // The generator's values hold letters, digits, `,` and spaces: a Host is a
        // non-empty one of letters and digits.
        let want_ok = hosts.len() <= 1
            && hosts.iter().all(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric()))
            && !codings.iter().any(|v| v.split(',').all(|t| t.trim().is_empty()))
            && numbers.iter().all(Option::is_some)
            && numbers.windows(2).all(|w| w[0] == w[1])
            && (codings.is_empty() || (lengths.is_empty() && tokens == ["chunked"]));
        prop_assert_eq!(got.is_ok(), want_ok, "{:?}: {:?}", lines, got);
        if let Ok(framing) = got {
            let want = if !codings.is_empty() {
                RequestFraming::Chunked
            } else {
                match numbers.first() {
                    Some(Some(n)) => RequestFraming::Length(*n),
                    _ => RequestFraming::None,
                }
            };
            prop_assert_eq!(framing, want);
        }
    }

    /// No header name read in any case or with underscores passes as another kind.
    #[test]
    fn names_fold_case_and_underscores_only(name in "[A-Za-z_\\-]{1,22}") {
        let dashed = name.replace('_', "-").to_ascii_lowercase();
        prop_assert_eq!(named(name.as_bytes()), named(dashed.as_bytes()));
    }
}

fn target(base: &str, api_path: &str, path: &str, query: Option<&str>) -> String {
    let mut out = Vec::new();
    push_upstream_target(&mut out, base, (api_path, path), query);
    String::from_utf8(out).expect("text")
}

#[test]
fn upstream_targets_replace_the_api_path_by_the_base_path() {
    let api = "/v1/infers/s";
    assert_eq!(
        target("/base", api, "/v1/infers/s/predictions/poetry", Some("a=1")),
        "/base/predictions/poetry?a=1"
    );
    assert_eq!(target("/base", api, api, None), "/base");
    assert_eq!(target("", api, api, None), "/");
    assert_eq!(target("", api, api, Some("q")), "/?q");
    assert_eq!(target("", api, "/v1/infers/s/x%20y", None), "/x%20y");
}

#[test]
fn model_calls_ask_for_unencoded_answers() {
    let rules = ClientHeaders::new(std::iter::empty(), false).unencoded(true);
    assert!(!rules.forwards(b"Accept-Encoding", b"gzip, br"));
    assert!(rules.forwards(b"accept", b"text/event-stream"));
    let plain = ClientHeaders::new(std::iter::empty(), false);
    assert!(plain.forwards(b"accept-encoding", b"gzip"));
    let conn = ConnInfo::new("127.0.0.1:5000".parse().expect("addr"), false);
    let caller = crate::authn::Caller::Anonymous;
    let forwarded = Forwarded {
        api_id: "a",
        caller: &caller,
        conn: &conn,
        request_id: b"r",
        hops: 1,
        trace: None,
    };
    let mut set = Vec::new();
    forwarded.set_forwarded_headers(&rules, None, std::iter::empty(), |name, value| {
        set.push((name.as_str().to_owned(), value.to_vec()))
    });
    assert!(
        set.contains(&("accept-encoding".to_owned(), b"identity".to_vec())),
        "{set:?}"
    );
}

#[test]
fn traced_calls_replace_the_clients_traceparent_in_one_place() {
    use crate::observe::trace::TraceContext;
    let context = |parent: Option<[u8; 8]>| TraceContext {
        trace_id: [7; 16],
        span_id: [9; 8],
        parent,
        sampled: true,
        path: String::new(),
        api: None,
        client: None,
        https: false,
    };
    let conn = ConnInfo::new("127.0.0.1:5000".parse().expect("addr"), false);
    let caller = crate::authn::Caller::Anonymous;
    for (trace, tracestate_kept) in [(context(Some([1; 8])), true), (context(None), false)] {
        let header = trace.header();
        let rules = ClientHeaders::new(std::iter::empty(), false).traced(Some(header));
        for name in ["traceparent", "TraceParent"] {
            assert!(!rules.forwards(name.as_bytes(), b"00-client"), "{name}");
        }
        assert_eq!(rules.forwards(b"tracestate", b"a=1"), tracestate_kept);
        let forwarded = Forwarded {
            api_id: "a",
            caller: &caller,
            conn: &conn,
            request_id: b"r",
            hops: 1,
            trace: Some(header),
        };
        let mut set = Vec::new();
        forwarded.set_forwarded_headers(&rules, None, std::iter::empty(), |name, value| {
            set.push((name.as_str().to_owned(), value.to_vec()))
        });
        let sent: Vec<_> = set.iter().filter(|(n, _)| n == "traceparent").collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].1,
            b"00-07070707070707070707070707070707-0909090909090909-01"
        );
    }
    // Untraced, the client's trace lines pass as sent.
    let plain = ClientHeaders::new(std::iter::empty(), false);
    assert!(plain.forwards(b"traceparent", b"00-client"));
    assert!(plain.forwards(b"tracestate", b"a=1"));
}
