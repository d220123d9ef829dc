//! SDK-HMAC-SHA256: the request signature of the ModelArts/APIG signing SDKs (spec §5.2).
//!
//! This crate owns canonicalisation, signing and verification of the signature math only.
//! It performs no IO and knows nothing of apps, users or stores: callers look up the secret
//! that belongs to an `Access` key and decide what a failure means for them.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use http::HeaderMap;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};
use smallvec::SmallVec;
use subtle::ConstantTimeEq;

/// The scheme token that starts an `Authorization` header of this algorithm.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// Header carrying the signing time, `YYYYMMDD'T'HHMMSS'Z'`.
pub const HEADER_SDK_DATE: &str = "x-sdk-date";
/// Header that, when present, replaces the body hash in the canonical request.
pub const HEADER_CONTENT_SHA256: &str = "x-sdk-content-sha256";
/// The payload hash value clients use to leave the body unsigned.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of the empty byte string, in lowercase hex.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Allowed distance between the signing time and the verifier's clock (spec §5.2).
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;

const SDK_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Bytes kept as they are by `E(s)`: `A–Z a–z 0–9 - _ . ~`.
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Why a request could not be signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("Authorization header does not start with {ALGORITHM}")]
    WrongAlgorithm,
    #[error("Access or Credential is empty in Authorization")]
    MissingAccess,
    #[error("SignedHeaders is empty in Authorization")]
    MissingSignedHeaders,
    #[error("Signature is empty in Authorization")]
    MissingSignature,
    #[error("x-sdk-date is not a signed header")]
    DateNotSigned,
    #[error("X-Sdk-Date header not found")]
    MissingDate,
    #[error("X-Sdk-Date {0:?} is not in the format YYYYMMDDTHHMMSSZ")]
    BadDate(String),
    #[error("signed header {0:?} is not present in the request")]
    MissingSignedHeader(String),
    #[error("header {0:?} has a value that is not visible ASCII or UTF-8")]
    BadHeaderValue(String),
    #[error("the body does not hash to X-Sdk-Content-Sha256")]
    BodyHashMismatch,
}

/// The parsed `Authorization: SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…` value.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access: String,
    /// Lowercase header names in the order the client listed them.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("access", &self.access)
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// Parses the header value: the scheme, then comma-separated `key=value` items with
    /// optional spaces. Unknown items are ignored; any of the three missing is an error.
    pub fn parse(value: &str) -> Result<Self, SignError> {
        let parts = AuthorizationParts::parse(value)?;
        Ok(Self {
            access: parts.access.to_owned(),
            signed_headers: parts
                .signed_headers
                .split(';')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            signature: parts.signature.to_owned(),
        })
    }

    /// Renders the header value as the SDKs send it.
    pub fn header_value(&self) -> String {
        format!(
            "{ALGORITHM} Access={}, SignedHeaders={}, Signature={}",
            self.access,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// The three items of an `Authorization` value as they stand in it, trimmed: what
/// [`Authorization::parse`] reads, without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationParts<'a> {
    pub access: &'a str,
    /// `;`-separated names as the client listed them.
    pub signed_headers: &'a str,
    pub signature: &'a str,
}

impl<'a> AuthorizationParts<'a> {
    /// Reads the header value as [`Authorization::parse`] does.
    pub fn parse(value: &'a str) -> Result<Self, SignError> {
        let value = value.trim_start();
        let rest = value
            .strip_prefix(ALGORITHM)
            .ok_or(SignError::WrongAlgorithm)?;
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(SignError::WrongAlgorithm);
        }
        let mut access = "";
        let mut signed_headers = "";
        let mut signature = "";
        // Items are split at ASCII bytes, so every slice lies on character boundaries.
        let bytes = rest.as_bytes();
        let mut start = 0;
        while start <= bytes.len() {
            let end = memchr::memchr(b',', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            let item = &rest[start..end];
            start = end + 1;
            let Some(eq) = memchr::memchr(b'=', item.as_bytes()) else {
                continue;
            };
            let val = item[eq + 1..].trim_ascii();
            match item[..eq].trim_ascii() {
                "Access" => access = val,
                "SignedHeaders" => signed_headers = val,
                "Signature" => signature = val,
                _ => {}
            }
        }
        if access.is_empty() {
            return Err(SignError::MissingAccess);
        }
        if signed_headers.is_empty() {
            return Err(SignError::MissingSignedHeaders);
        }
        if signature.is_empty() {
            return Err(SignError::MissingSignature);
        }
        Ok(Self {
            access,
            signed_headers,
            signature,
        })
    }
}

/// `E(s)`: percent-encodes every byte outside `A–Z a–z 0–9 - _ . ~` with uppercase hex.
pub fn encode(bytes: &[u8]) -> String {
    // utf8_percent_encode works on &str; encode raw bytes through percent_encode instead.
    percent_encoding::percent_encode(bytes, ENCODE_SET).to_string()
}

fn encode_str(s: &str) -> String {
    utf8_percent_encode(s, ENCODE_SET).to_string()
}

/// Classes of bytes for the canonical forms' fast paths, one table lookup per byte.
const UNRESERVED: u8 = 1;
/// `/` in a path, `&` and `=` in a query: copied as they are.
const PATH_SEP: u8 = 2;
const QUERY_SEP: u8 = 4;
static PLAIN: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            table[b] = UNRESERVED;
        }
        b += 1;
    }
    table[b'/' as usize] = PATH_SEP;
    table[b'&' as usize] = QUERY_SEP;
    table[b'=' as usize] = QUERY_SEP;
    table
};

/// `text` without leading and trailing whitespace, as [`str::trim`] has it; a value that
/// starts and ends with a visible ASCII character (the usual header value) is not scanned.
fn trim(text: &str) -> &str {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => text,
        _ => text.trim(),
    }
}

/// Whether every byte of `text` is unreserved or of the class `sep`.
fn all_plain(text: &str, sep: u8) -> bool {
    text.bytes()
        .all(|b| PLAIN[usize::from(b)] & (UNRESERVED | sep) != 0)
}

/// Appends CanonicalURI to `out`. A path of unreserved bytes and `/` (the usual case)
/// decodes and encodes to itself, so it is copied as it is.
fn push_canonical_uri(out: &mut String, raw_path: &str) {
    if all_plain(raw_path, PATH_SEP) {
        out.push_str(raw_path);
        if !raw_path.ends_with('/') {
            out.push('/');
        }
    } else {
        out.push_str(&canonical_uri(raw_path));
    }
}

/// Appends CanonicalQuery to `out`. A query of unreserved bytes, `&` and one `=` per item
/// decodes and encodes to itself, so only its items are sorted.
fn push_canonical_query(out: &mut String, raw_query: &str) {
    if !all_plain(raw_query, QUERY_SEP) {
        out.push_str(&canonical_query(raw_query));
        return;
    }
    let mut pairs: SmallVec<[(&str, &str); 8]> = SmallVec::new();
    // The query is ASCII here: its items are found byte by byte, with no character search.
    let (mut start, mut eq) = (0, None);
    for (i, b) in raw_query.bytes().chain([b'&']).enumerate() {
        match (b, eq) {
            (b'=', None) => eq = Some(i),
            (b'=', Some(_)) => {
                // A second `=` belongs to the value and is encoded.
                out.push_str(&canonical_query(raw_query));
                return;
            }
            (b'&', _) => {
                let (key, value) = match eq {
                    Some(eq) => (&raw_query[start..eq], &raw_query[eq + 1..i]),
                    None => (&raw_query[start..i], ""),
                };
                if !key.is_empty() {
                    pairs.push((key, value));
                }
                (start, eq) = (i + 1, None);
            }
            _ => {}
        }
    }
    pairs.sort_unstable();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
}

/// CanonicalURI: decode the raw path, split on `/`, encode each segment, and make sure the
/// result ends with `/`.
pub fn canonical_uri(raw_path: &str) -> String {
    let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
    let mut out = String::with_capacity(decoded.len() + 8);
    for (i, segment) in decoded.split(|b| *b == b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(&encode(segment));
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// CanonicalQuery: items split on `&` and the first `=`, empty keys skipped, decoded (`+`
/// stays `+`), sorted by (key, value), re-encoded and joined with `&`.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = raw_query
        .split('&')
        .filter_map(|item| {
            let (key, value) = item.split_once('=').unwrap_or((item, ""));
            if key.is_empty() {
                return None;
            }
            Some((
                percent_decode_str(key).collect(),
                percent_decode_str(value).collect(),
            ))
        })
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(raw_query.len() + 16);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(key));
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// Canonical query built from already-decoded pairs, as the core SDK signer takes them.
pub fn canonical_query_from_pairs(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(k, _)| !k.is_empty())
        .collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", encode_str(k), encode_str(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_string(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// SHA-256 of a body fed as it arrives, piece by piece: the same digest as [`sha256_hex`] of
/// the pieces joined, without joining them.
pub struct BodyHasher(digest::Context);

impl Default for BodyHasher {
    fn default() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }
}

impl BodyHasher {
    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    /// Lowercase hex SHA-256 of everything fed.
    pub fn finish_hex(self) -> String {
        hex_string(self.0.finish().as_ref())
    }
}

/// The 64 lowercase hex digits of the SHA-256 of `bytes`, without allocating.
fn sha256_hex_digits(bytes: &[u8]) -> [u8; 64] {
    hex_digits(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// The two lowercase hex digits of every byte, one table lookup each.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [DIGITS[b >> 4], DIGITS[b & 15]];
        b += 1;
    }
    table
};

/// The lowercase hex digits of `bytes`, which must be `N / 2` long (the rest of the output
/// stays zero otherwise), without allocating.
pub fn hex_digits<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    out
}

/// The lowercase hex digits of `bytes` as text.
pub fn hex_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 * bytes.len());
    for &b in bytes {
        let [high, low] = HEX_PAIRS[usize::from(b)];
        out.push(char::from(high));
        out.push(char::from(low));
    }
    out
}

/// The inputs of a canonical request, all taken from the request as received or sent.
#[derive(Debug, Clone)]
pub struct CanonicalInput<'a> {
    pub method: &'a str,
    /// The path exactly as on the request line (still percent-encoded).
    pub raw_path: &'a str,
    /// The query exactly as on the request line, without `?`; empty when none.
    pub raw_query: &'a str,
    /// `(lowercase name, value)` in the order of `SignedHeaders`; values are trimmed here.
    pub headers: Vec<(String, String)>,
    pub payload_hash: &'a str,
}

impl CanonicalInput<'_> {
    /// The signed header names joined by `;` (they must already be sorted by the signer).
    pub fn signed_headers(&self) -> String {
        self.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The canonical request text of spec §5.2.
    pub fn canonical_request(&self) -> String {
        let mut out = canonical_request_head(
            self.method,
            self.raw_path,
            self.raw_query,
            &self.headers,
            self.payload_hash.len(),
        );
        out.push_str(self.payload_hash);
        out
    }
}

/// The canonical request up to and including the newline before the payload hash; `spare`
/// more bytes are reserved for it.
fn canonical_request_head<N: AsRef<str>, V: AsRef<str>>(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(N, V)],
    spare: usize,
) -> String {
    let headers_len: usize = headers
        .iter()
        .map(|(n, v)| 2 * n.as_ref().len() + v.as_ref().len() + 3)
        .sum();
    let mut out = String::with_capacity(
        method.len() + raw_path.len() + raw_query.len() + headers_len + 8 + spare,
    );
    for c in method.chars() {
        out.push(c.to_ascii_uppercase());
    }
    out.push('\n');
    push_canonical_uri(&mut out, raw_path);
    out.push('\n');
    push_canonical_query(&mut out, raw_query);
    out.push('\n');
    // Names are lowercase in the canonical request, however the client listed them.
    let push_name = |out: &mut String, name: &str| {
        let start = out.len();
        out.push_str(name);
        out[start..].make_ascii_lowercase();
    };
    for (name, value) in headers {
        push_name(&mut out, name.as_ref());
        out.push(':');
        out.push_str(trim(value.as_ref()));
        out.push('\n');
    }
    out.push('\n');
    for (i, (name, _)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        push_name(&mut out, name.as_ref());
    }
    out.push('\n');
    out
}

/// `SDK-HMAC-SHA256\n{date}\n{hex(sha256(canonical_request))}`.
pub fn string_to_sign(sdk_date: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// A secret ready to sign with: HMAC-SHA256's inner and outer key blocks are hashed once
/// here instead of for every request.
#[derive(Clone)]
pub struct SigningKey(hmac::Key);

impl SigningKey {
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// HMAC-SHA256, keyed by the secret's UTF-8 bytes, of the string to sign
/// (`SDK-HMAC-SHA256\n{date}\n{hex(sha256(canonical_request))}`), fed in its parts.
fn signature_bytes(key: &SigningKey, sdk_date: &str, canonical_request: &str) -> [u8; 32] {
    let digest_hex = sha256_hex_digits(canonical_request.as_bytes());
    let mut mac = hmac::Context::with_key(&key.0);
    mac.update(ALGORITHM.as_bytes());
    mac.update(b"\n");
    mac.update(sdk_date.as_bytes());
    mac.update(b"\n");
    mac.update(&digest_hex);
    let mut out = [0u8; 32];
    out.copy_from_slice(mac.sign().as_ref());
    out
}

/// Whether a presented signature is `expected`, written as 64 lowercase hex digits (the
/// only form a signer produces), in time independent of where they differ.
fn signature_matches(expected: &[u8; 32], presented: &[u8]) -> bool {
    let digits: [u8; 64] = hex_digits(expected);
    if presented.len() != digits.len() {
        return false;
    }
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        u64::from_ne_bytes(w)
    };
    let diff = digits
        .chunks_exact(8)
        .zip(presented.chunks_exact(8))
        .fold(0u64, |diff, (a, b)| diff | (word(a) ^ word(b)));
    diff.ct_eq(&0).into()
}

/// Parses an `X-Sdk-Date` value into a UTC time.
pub fn parse_sdk_date(value: &str) -> Result<DateTime<Utc>, SignError> {
    let text = trim(value);
    if let Some(time) = parse_basic_date(text.as_bytes()) {
        return Ok(time);
    }
    NaiveDateTime::parse_from_str(text, SDK_DATE_FORMAT)
        .map(|naive| naive.and_utc())
        .map_err(|_| SignError::BadDate(value.to_owned()))
}

/// `YYYYMMDDTHHMMSSZ` read digit by digit (what every signer sends); `None` sends anything
/// else, valid or not, to the general parser.
fn parse_basic_date(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(4..6)?, num(6..8)?)?;
    let time = date.and_hms_opt(num(9..11)?, num(11..13)?, num(13..15)?)?;
    Some(time.and_utc())
}

/// Formats a time as an `X-Sdk-Date` value.
pub fn format_sdk_date(time: DateTime<Utc>) -> String {
    time.format(SDK_DATE_FORMAT).to_string()
}

/// Whether the signing time lies within ±15 minutes of `now`.
pub fn date_within_skew(signed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - signed_at).num_seconds().abs() <= MAX_CLOCK_SKEW_SECONDS
}

/// Where the verifier reads a request's headers: an `http::HeaderMap`, or the header list
/// of a request head parsed in place. Names are asked for in lowercase and matched in any
/// case.
pub trait HeaderSource {
    /// Each value of the header `name` (lowercase), in the order received.
    fn values<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]>;

    /// Every header as `(name, value)`, in the order received.
    fn all(&self) -> impl Iterator<Item = (&str, &[u8])>;

    /// The first value of `name` as text, trimmed; `None` when absent or not UTF-8.
    fn text(&self, name: &str) -> Option<&str> {
        self.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(trim)
    }
}

impl HeaderSource for HeaderMap {
    fn values<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s [u8]> {
        self.get_all(name)
            .into_iter()
            .map(http::HeaderValue::as_bytes)
    }

    fn all(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}

/// Joins the values of one header name with `,`, as the verifier canonicalises repeats; a
/// single value (the usual case) is borrowed.
fn header_value<'h, H: HeaderSource + ?Sized>(
    headers: &'h H,
    name: &str,
) -> Result<Option<Cow<'h, str>>, SignError> {
    let mut joined: Option<Cow<'h, str>> = None;
    for value in headers.values(name) {
        let text = trim(
            std::str::from_utf8(value).map_err(|_| SignError::BadHeaderValue(name.to_owned()))?,
        );
        match joined.as_mut() {
            Some(existing) => {
                let existing = existing.to_mut();
                existing.push(',');
                existing.push_str(text);
            }
            None => joined = Some(Cow::Borrowed(text)),
        }
    }
    Ok(joined)
}

/// A request as the verifier sees it.
#[derive(Debug)]
pub struct ReceivedRequest<'a, H: ?Sized = HeaderMap> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a H,
    /// Lowercase hex SHA-256 of the body as received; `None` when the body was not hashed
    /// (the client declared `X-Sdk-Content-Sha256`, so its value is used instead).
    pub body_sha256: Option<&'a str>,
    /// Whether the body is empty (the core SDK then hashes "" even with the header set).
    pub body_is_empty: bool,
}

// By hand: derived impls would ask `H: Clone`, which a reference does not need.
impl<H: ?Sized> Clone for ReceivedRequest<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: ?Sized> Copy for ReceivedRequest<'_, H> {}

/// What a verification needs once the Authorization header is parsed: the date and the
/// canonical requests the server accepts (more than one only for the empty-body quirk).
/// It borrows from the request it was prepared from.
#[derive(Debug, Clone)]
pub struct PreparedVerification<'a> {
    /// `Access` of the Authorization header.
    pub access: &'a str,
    /// `Signature` of the Authorization header, as sent.
    signature: &'a str,
    pub sdk_date: Cow<'a, str>,
    pub signed_at: DateTime<Utc>,
    /// The primary canonical request, then the empty-body quirk's when there is one.
    canonical_requests: (String, Option<String>),
}

/// Outcome of checking a prepared request against a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// The signature did not match; carries the primary canonical request the server built.
    Mismatch {
        canonical_request: String,
    },
}

impl<'a> PreparedVerification<'a> {
    /// Parses the `Authorization` value and rebuilds the canonical request from the client's
    /// `SignedHeaders` list, without yet knowing the secret.
    pub fn prepare<H: HeaderSource + ?Sized>(
        authorization: &'a str,
        request: ReceivedRequest<'a, H>,
    ) -> Result<Self, SignError> {
        Self::prepare_parts(AuthorizationParts::parse(authorization)?, request)
    }

    /// [`PreparedVerification::prepare`] for an `Authorization` value already read.
    pub fn prepare_parts<H: HeaderSource + ?Sized>(
        parts: AuthorizationParts<'a>,
        request: ReceivedRequest<'a, H>,
    ) -> Result<Self, SignError> {
        let AuthorizationParts {
            access,
            signed_headers,
            signature,
        } = parts;
        // Names in the client's order, as it listed them (any case); values below.
        let mut headers: SmallVec<[(&str, Cow<'_, str>); 8]> = signed_headers
            .split(';')
            .map(str::trim_ascii)
            .filter(|h| !h.is_empty())
            .map(|name| (name, Cow::Borrowed("")))
            .collect();
        if !headers
            .iter()
            .any(|(h, _)| h.eq_ignore_ascii_case(HEADER_SDK_DATE))
        {
            return Err(SignError::DateNotSigned);
        }
        let date = header_value(request.headers, HEADER_SDK_DATE)?.ok_or(SignError::MissingDate)?;
        let signed_at = parse_sdk_date(&date)?;
        for (name, value) in &mut headers {
            *value = if name.eq_ignore_ascii_case(HEADER_SDK_DATE) {
                date.clone()
            } else {
                header_value(request.headers, name)?
                    .ok_or_else(|| SignError::MissingSignedHeader(name.to_ascii_lowercase()))?
            };
        }
        let declared = header_value(request.headers, HEADER_CONTENT_SHA256)?;
        // A declared hash is only believed when it is the body's: a replay with another body
        // and its own declared hash is refused. `UNSIGNED-PAYLOAD` declares none.
        if let (Some(declared), Some(hash)) = (&declared, request.body_sha256) {
            let unsigned = declared.trim() == UNSIGNED_PAYLOAD;
            if !unsigned && !declared.trim().eq_ignore_ascii_case(hash) {
                return Err(SignError::BodyHashMismatch);
            }
        }
        // The hash the client signed, and for the empty-body quirk a second candidate.
        let (primary, second): (&str, Option<&str>) = match (&declared, request.body_sha256) {
            (Some(declared), _) if !request.body_is_empty => (declared, None),
            (Some(declared), _) => (declared, Some(EMPTY_BODY_SHA256)),
            (None, Some(hash)) => (hash, None),
            (None, None) => (EMPTY_BODY_SHA256, None),
        };
        let head = canonical_request_head(
            request.method,
            request.raw_path,
            request.raw_query,
            &headers,
            primary.len(),
        );
        let with = |mut head: String, hash: &str| {
            head.push_str(hash);
            head
        };
        let second = second.map(|hash| with(head.clone(), hash));
        Ok(Self {
            access,
            signature,
            sdk_date: date,
            signed_at,
            canonical_requests: (with(head, primary), second),
        })
    }

    /// The canonical requests the server accepts, the primary one first.
    fn canonical_requests(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.canonical_requests.0.as_str())
            .chain(self.canonical_requests.1.as_deref())
    }

    /// Checks the signature against `secret`, comparing in constant time.
    pub fn verify(&self, secret: &[u8]) -> Verdict {
        self.verify_with(&SigningKey::new(secret))
    }

    /// [`PreparedVerification::verify`] with a key prepared beforehand.
    pub fn verify_with(&self, key: &SigningKey) -> Verdict {
        let presented = self.signature.as_bytes();
        let mut matched = false;
        for canonical in self.canonical_requests() {
            let expected = signature_bytes(key, &self.sdk_date, canonical);
            matched |= signature_matches(&expected, presented);
        }
        if matched {
            Verdict::Valid
        } else {
            Verdict::Mismatch {
                canonical_request: self.canonical_requests.0.clone(),
            }
        }
    }
}

/// What a client-side signature produced, kept for `--explain`.
#[derive(Debug, Clone)]
pub struct Signed {
    pub authorization: Authorization,
    pub canonical_request: String,
    pub string_to_sign: String,
}

/// Signs a request the way the standalone APIG signer does: every given header is signed
/// (lowercased, sorted), `host` included; the payload hash is `X-Sdk-Content-Sha256` when
/// given, else the SHA-256 of `body`. `headers` must already contain `X-Sdk-Date` and `Host`.
pub fn sign(
    access: &str,
    secret: &[u8],
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Signed {
    let mut signed: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match signed.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(value.trim());
            }
            None => signed.push((name, value.trim().to_owned())),
        }
    }
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    let date = signed
        .iter()
        .find(|(n, _)| n == HEADER_SDK_DATE)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let payload_hash = signed
        .iter()
        .find(|(n, _)| n == HEADER_CONTENT_SHA256)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| sha256_hex(body));
    let input = CanonicalInput {
        method,
        raw_path,
        raw_query,
        headers: signed,
        payload_hash: &payload_hash,
    };
    let canonical_request = input.canonical_request();
    let string_to_sign = string_to_sign(&date, &canonical_request);
    let signature = hex::encode(signature_bytes(
        &SigningKey::new(secret),
        &date,
        &canonical_request,
    ));
    Signed {
        authorization: Authorization {
            access: access.to_owned(),
            signed_headers: input.headers.iter().map(|(n, _)| n.clone()).collect(),
            signature,
        },
        canonical_request,
        string_to_sign,
    }
}

#[cfg(test)]
mod tests;
