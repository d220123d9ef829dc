//! Token usage of model calls, read from the answers as they are relayed: the `usage`
//! object of a JSON answer, or of the last event of a `text/event-stream` answer that
//! carries one (OpenAI's chat completions, completions, embeddings and responses APIs, and
//! the servers that copy them: vLLM, TGI, SGLang, Ollama). The tap only reads the bytes the
//! relay writes anyway; it never holds one back. An answer cut short is counted from what
//! was relayed: the completion estimated from the text of the relayed deltas, marked so.
//!
//! Both servers feed it the decoded body: the fast path as its relay takes the upstream's
//! framing apart, the general server with each data frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use infergate_core::model::UsageCounts;
use serde::Deserialize;

/// The paths (an API's sub-path ends with one) whose answers are read for usage, and the
/// API each names; `/chat/completions` before `/completions`.
const MODEL_PATHS: &[(&str, ModelApi)] = &[
    ("/chat/completions", ModelApi::ChatCompletions),
    ("/completions", ModelApi::Completions),
    ("/embeddings", ModelApi::Embeddings),
    ("/responses", ModelApi::Responses),
];

// `model_api_at` tells most other paths apart by their last byte.
const _: () = {
    let mut i = 0;
    while i < MODEL_PATHS.len() {
        let path = MODEL_PATHS[i].0.as_bytes();
        assert!(path[path.len() - 1] == b's');
        i += 1;
    }
};

/// Of a JSON answer, the first and the last this many bytes are kept (an embedding's
/// vectors can be megabytes; `usage` comes at one end): an answer's memory is bounded.
const JSON_END: usize = 64 * 1024;
/// The longest event line kept while it arrives.
const MAX_LINE: usize = 1024 * 1024;

/// The tokens of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Completion tokens spent reasoning, where reported.
    pub reasoning: u64,
    /// Prompt tokens served from a cache, where reported.
    pub cached: u64,
    /// Not reported by the model server: estimated from the bytes relayed.
    pub estimated: bool,
}

/// Which OpenAI API a call's path names (its sub-path ends with the API's path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelApi {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
}

impl ModelApi {
    /// Its `gen_ai.operation.name` in OpenTelemetry's semantic conventions.
    pub fn operation(self) -> &'static str {
        match self {
            ModelApi::ChatCompletions | ModelApi::Responses => "chat",
            ModelApi::Completions => "text_completion",
            ModelApi::Embeddings => "embeddings",
        }
    }

    /// The member of a request that caps its completion tokens, where the gateway adds one.
    fn cap_member(self) -> Option<&'static str> {
        match self {
            ModelApi::ChatCompletions | ModelApi::Completions => Some("max_tokens"),
            ModelApi::Responses => Some("max_output_tokens"),
            ModelApi::Embeddings => None,
        }
    }

    /// Whether this API's servers read `member` as the cap of the answer's tokens (a cap
    /// another API reads bounds nothing here).
    fn reads_cap(self, member: &str) -> bool {
        match self {
            ModelApi::ChatCompletions => matches!(member, "max_tokens" | "max_completion_tokens"),
            ModelApi::Completions => member == "max_tokens",
            ModelApi::Responses => member == "max_output_tokens",
            ModelApi::Embeddings => false,
        }
    }
}

/// The model API a call of `path` reaches, read as the model server reads it: the query
/// left out, percent-escapes decoded (`/chat/complet%69ons` is a chat completion), a
/// trailing slash ignored.
pub fn model_api(path: &str) -> Option<ModelApi> {
    model_api_at("", path.split('?').next().unwrap_or(path))
}

/// Whether the answer to a call of `path` is read for usage.
pub fn is_model_path(path: &str) -> bool {
    model_api(path).is_some()
}

/// The model API an upstream reaches at `base` (its base path) followed by `rest` (the
/// call's path below its API's `api_path`, query left out): an API at `/llm` over
/// `http://host/v1/chat/completions` is a chat completion. Joined without a copy.
pub fn model_api_at(base: &str, rest: &str) -> Option<ModelApi> {
    // Most paths have nothing to decode.
    let decoded = if rest.contains('%') {
        percent_encoding::percent_decode_str(rest).decode_utf8_lossy()
    } else {
        std::borrow::Cow::Borrowed(rest)
    };
    let rest = decoded.trim_end_matches('/');
    let base = if rest.is_empty() {
        base.trim_end_matches('/')
    } else {
        base
    };
    // Every model path ends in `s`: most other paths are told apart by their last byte.
    let last = rest.as_bytes().last().or(base.as_bytes().last());
    if last != Some(&b's') {
        return None;
    }
    let joined_ends_with = |suffix: &str| {
        if rest.len() >= suffix.len() {
            rest.ends_with(suffix)
        } else {
            suffix.ends_with(rest) && base.ends_with(&suffix[..suffix.len() - rest.len()])
        }
    };
    MODEL_PATHS
        .iter()
        .find(|(suffix, _)| joined_ends_with(suffix))
        .map(|(_, api)| *api)
}

/// The `usage` object in either naming (chat/completions: prompt/completion; responses:
/// input/output).
#[derive(Debug, Deserialize)]
struct Reported {
    #[serde(alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(alias = "output_tokens")]
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    #[serde(alias = "output_tokens_details")]
    completion_tokens_details: Option<Details>,
    #[serde(alias = "input_tokens_details")]
    prompt_tokens_details: Option<Details>,
}

#[derive(Debug, Deserialize)]
struct Details {
    reasoning_tokens: Option<u64>,
    cached_tokens: Option<u64>,
}

/// The parts of an answer (or event) that carry usage.
#[derive(Debug, Deserialize)]
struct Answer {
    usage: Option<Reported>,
    /// The responses API nests the finished response in its last event.
    response: Option<Box<Answer>>,
}

/// The most tokens one call is counted for: no model call comes near, and sums of many
/// calls then cannot overflow anywhere they are stored.
pub const MAX_CALL_TOKENS: u64 = 1 << 32;

impl Reported {
    /// Whether any count is there (an object named `usage` without one is something else).
    fn says_anything(&self) -> bool {
        self.prompt_tokens.is_some()
            || self.completion_tokens.is_some()
            || self.total_tokens.is_some()
    }

    fn usage(&self) -> Usage {
        let count = |n: Option<u64>| n.unwrap_or(0).min(MAX_CALL_TOKENS);
        let prompt = count(self.prompt_tokens);
        let completion = count(self.completion_tokens);
        Usage {
            prompt,
            completion,
            total: self
                .total_tokens
                .map_or(prompt + completion, |t| t.min(2 * MAX_CALL_TOKENS)),
            reasoning: count(
                self.completion_tokens_details
                    .as_ref()
                    .and_then(|d| d.reasoning_tokens),
            ),
            cached: count(
                self.prompt_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens),
            ),
            estimated: false,
        }
    }
}

impl Answer {
    fn reported(&self) -> Option<Usage> {
        self.usage
            .as_ref()
            .map(Reported::usage)
            .or_else(|| self.response.as_ref().and_then(|r| r.reported()))
    }
}

/// The fields of a model request that decide whether usage must be asked for.
#[derive(Debug, Deserialize)]
struct StreamRequest {
    stream: Option<bool>,
    stream_options: Option<serde::de::IgnoredAny>,
}

/// Whether a request of `api` must be asked for usage: a streamed chat or completion
/// request that does not ask for it and does not set `stream_options` otherwise.
fn needs_usage_asked(api: ModelApi, body: &[u8]) -> bool {
    if !matches!(api, ModelApi::ChatCompletions | ModelApi::Completions) {
        return false;
    }
    // Cheap before the parse: a request that never says `"stream"` is not streamed.
    static STREAM: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    if STREAM
        .get_or_init(|| memchr::memmem::Finder::new(b"\"stream\""))
        .find(body)
        .is_none()
    {
        return false;
    }
    // Any `stream_options` (even `null`) is the client's: never a second key.
    if memchr::memmem::find(body, b"\"stream_options\"").is_some() {
        return false;
    }
    serde_json::from_slice::<StreamRequest>(body)
        .is_ok_and(|r| r.stream == Some(true) && r.stream_options.is_none())
}

/// The body a model call's upstream receives, where it differs from the client's: a
/// streamed chat or completion request that does not ask for usage gets
/// `"stream_options":{"include_usage":true}`, and a request the gateway caps (see
/// [`Reserved::cap`]) gets its cap, each added as a last member of its object, every other
/// byte as the client sent it. `None` leaves the body as it is. The second value says
/// whether usage was asked for (its chunk is then dropped from the answer).
pub fn forwarded_request(
    api: ModelApi,
    body: &[u8],
    cap: Option<(&'static str, u64)>,
) -> Result<Option<(Vec<u8>, bool)>, String> {
    let ask = needs_usage_asked(api, body);
    if !ask && cap.is_none() {
        return Ok(None);
    }
    let trimmed = body.trim_ascii_end();
    let object = trimmed
        .strip_suffix(b"}")
        .filter(|_| trimmed.trim_ascii_start().starts_with(b"{"));
    let Some(without_brace) = object else {
        // A capped call's body was read as an object before; never forwarded uncapped.
        return match cap {
            Some(_) => {
                Err("body: a token-limited model call's body must be one JSON object".into())
            }
            None => Ok(None),
        };
    };
    let mut empty = without_brace.trim_ascii_end().ends_with(b"{");
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(without_brace);
    let mut member = |out: &mut Vec<u8>, text: &[u8]| {
        if !empty {
            out.push(b',');
        }
        empty = false;
        out.extend_from_slice(text);
    };
    if ask {
        member(&mut out, br#""stream_options":{"include_usage":true}"#);
    }
    if let Some((name, tokens)) = cap {
        member(&mut out, format!("\"{name}\":{tokens}").as_bytes());
    }
    out.push(b'}');
    out.extend_from_slice(&body[trimmed.len()..]);
    Ok(Some((out, ask)))
}

/// [`forwarded_request`] of a call of `path`, without a cap: the body that asks for usage,
/// if it must.
pub fn ask_for_usage(path: &str, body: &[u8]) -> Option<Vec<u8>> {
    forwarded_request(model_api(path)?, body, None)
        .ok()
        .flatten()
        .map(|(body, _)| body)
}

/// The key every usage object is found by: a raw `"usage"` cannot occur inside a JSON
/// string (its quotes would be escaped).
const USAGE_KEY: &[u8] = b"\"usage\"";

fn usage_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
        std::sync::OnceLock::new();
    FINDER.get_or_init(|| memchr::memmem::Finder::new(USAGE_KEY))
}

/// The value after a key found at `at` (its quotes included): `None` when it is `null`
/// (OpenAI sends `"usage":null` in every chunk of a stream that asked for usage).
fn value_after(bytes: &[u8], at: usize, key_len: usize) -> Option<&[u8]> {
    let rest = bytes.get(at + key_len..)?.trim_ascii_start();
    let value = rest.strip_prefix(b":")?.trim_ascii_start();
    (!value.starts_with(b"null")).then_some(value)
}

/// Bytes of generated text in an event's data: the string values of `"content"`,
/// `"reasoning_content"`, `"text"` and (the responses API's deltas) `"delta"`, found by
/// scanning rather than parsing.
fn text_bytes(data: &[u8]) -> usize {
    static FINDERS: std::sync::OnceLock<Vec<memchr::memmem::Finder<'static>>> =
        std::sync::OnceLock::new();
    let finders = FINDERS.get_or_init(|| {
        [
            &b"\"content\""[..],
            b"\"reasoning_content\"",
            b"\"text\"",
            b"\"delta\"",
            // Tool calls' arguments, streamed in pieces.
            b"\"arguments\"",
        ]
        .into_iter()
        .map(memchr::memmem::Finder::new)
        .collect()
    });
    let mut total = 0;
    for finder in finders {
        let key = finder.needle();
        for at in finder.find_iter(data) {
            let Some(value) = value_after(data, at, key.len()) else {
                continue;
            };
            let Some(string) = value.strip_prefix(b"\"") else {
                continue;
            };
            let mut i = 0;
            while let Some(q) = memchr::memchr2(b'"', b'\\', &string[i..]) {
                if string[i + q] == b'\\' {
                    // An escape at the very end (a line cut there) ends the string.
                    i = (i + q + 2).min(string.len());
                    continue;
                }
                total += i + q;
                break;
            }
        }
    }
    total
}

/// The bounds `[start, end)` of the line (its `\n` included when there) around `at`.
fn line_around(bytes: &[u8], at: usize) -> (usize, usize) {
    let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
    let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i + 1);
    (start, end)
}

/// The data of an event line (`data: …`), without its line end.
fn line_data(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let data = line.strip_prefix(b"data:")?;
    Some(data.strip_prefix(b" ").unwrap_or(data))
}

/// Whether `line` is the data line of the usage-only chunk: empty `choices`, a `usage`.
fn is_usage_chunk(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Chunk {
        choices: Option<Vec<serde::de::IgnoredAny>>,
        usage: Option<serde::de::IgnoredAny>,
    }
    line_data(line)
        .and_then(|data| serde_json::from_slice::<Chunk>(data).ok())
        .is_some_and(|chunk| {
            chunk.usage.is_some() && chunk.choices.is_some_and(|choices| choices.is_empty())
        })
}

/// Whether `line` is blank (`\n` or `\r\n`).
fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// Drops from an event stream the chunk the gateway caused by asking for usage (empty
/// `choices` and a `usage` object: its data line and the blank line that ends it). Every
/// other byte passes as it came; only a line whose end has not arrived is held. Lines are
/// found with one scan for the usage key per piece, so the cost per event stays small.
#[derive(Debug, Default)]
pub struct UsageChunkFilter {
    /// The line not yet ended.
    held: Vec<u8>,
    /// A usage chunk's data line was dropped: the blank line after it goes too.
    drop_blank: bool,
}

impl UsageChunkFilter {
    /// Takes the next body bytes; appends to `out` those the client gets now.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let Some(first_end) = memchr::memchr(b'\n', bytes) else {
            self.held.extend_from_slice(bytes);
            if self.held.len() > MAX_LINE {
                // No event line is this long: it passes, unread, and nothing is held.
                out.append(&mut self.held);
            }
            return;
        };
        // The held line ends here.
        let mut first = std::mem::take(&mut self.held);
        first.extend_from_slice(&bytes[..=first_end]);
        self.line(&first, out);
        let last_end = memchr::memrchr(b'\n', bytes).unwrap_or(first_end);
        let region = &bytes[first_end + 1..=last_end];
        let mut copied = 0;
        if self.drop_blank && !region.is_empty() {
            let (_, end) = line_around(region, 0);
            if is_blank(&region[..end]) {
                copied = end;
            }
            self.drop_blank = false;
        }
        for at in usage_finder().find_iter(region) {
            if value_after(region, at, USAGE_KEY.len()).is_none() {
                continue;
            }
            let (start, end) = line_around(region, at);
            if start < copied || !is_usage_chunk(&region[start..end]) {
                continue;
            }
            out.extend_from_slice(&region[copied..start]);
            copied = end;
            // The blank line that ends the chunk.
            if copied < region.len() {
                let (_, next) = line_around(region, copied);
                if is_blank(&region[copied..next]) {
                    copied = next;
                }
            } else {
                self.drop_blank = true;
            }
        }
        out.extend_from_slice(&region[copied..]);
        self.held.extend_from_slice(&bytes[last_end + 1..]);
    }

    /// One whole line (with its `\n`).
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if std::mem::take(&mut self.drop_blank) && is_blank(line) {
            return;
        }
        if usage_finder().find(line).is_some() && is_usage_chunk(line) {
            self.drop_blank = true;
            return;
        }
        out.extend_from_slice(line);
    }

    /// Whether bytes are held (a line whose end has not arrived).
    pub fn holds(&self) -> bool {
        !self.held.is_empty()
    }

    /// The bytes still held when the stream ends (a line without its end).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.held);
        if !is_usage_chunk(&line) {
            out.extend_from_slice(&line);
        }
    }
}

/// Tokens estimated from bytes of text: about four per token for English and code (what
/// OpenAI's guidance gives), rounded up.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The members of a model request that bound the tokens of its answer: `None` when absent,
/// `Some(None)` when given a value that is not a positive count. A member given twice
/// counts as the model server reads it (the last one); a number in a string or with a
/// fraction counts as the number (what a lax server accepts).
#[derive(Debug, Default, PartialEq, Eq)]
struct Caps {
    max_tokens: Option<Option<u64>>,
    max_completion_tokens: Option<Option<u64>>,
    max_output_tokens: Option<Option<u64>>,
    n: Option<Option<u64>>,
    best_of: Option<Option<u64>>,
    /// How many prompts `prompt` holds (the completions API answers each).
    prompts: Option<u64>,
    /// A member the gateway does not count but some server reads as a cap or a count: a
    /// spelling of one of the above in another case, or another server's name for one.
    unread: Option<String>,
}

/// Other servers' names for a cap or a count of answers (llama.cpp, TGI, Ollama).
const OTHER_CAPS: &[&str] = &["n_predict", "max_new_tokens", "num_predict", "max_length"];

/// `key` as a server that matches member names without regard to case would read it
/// (Go's `encoding/json` folds `ſ` to `s` and the Kelvin sign to `k` too).
fn folded(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

impl<'de> Deserialize<'de> for Caps {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Caps;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Caps, A::Error> {
                let mut caps = Caps::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match &*key {
                        "max_tokens" => &mut caps.max_tokens,
                        "max_completion_tokens" => &mut caps.max_completion_tokens,
                        "max_output_tokens" => &mut caps.max_output_tokens,
                        "n" => &mut caps.n,
                        "best_of" => &mut caps.best_of,
                        "prompt" => {
                            caps.prompts = Some(map.next_value::<PromptCount>()?.0);
                            continue;
                        }
                        other => {
                            let read_as = folded(other);
                            let counted = [
                                "max_tokens",
                                "max_completion_tokens",
                                "max_output_tokens",
                                "n",
                                "best_of",
                                "prompt",
                            ];
                            if caps.unread.is_none()
                                && (counted.contains(&read_as.as_str())
                                    || OTHER_CAPS.contains(&read_as.as_str()))
                            {
                                caps.unread = Some(other.to_owned());
                            }
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(count_of(&map.next_value::<serde_json::Value>()?));
                }
                Ok(caps)
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// How many prompts a `prompt` member holds: a list of strings or of token lists holds one
/// each; a string, or one list of token ids, is one.
struct PromptCount(u64);

impl<'de> Deserialize<'de> for PromptCount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// One element of a `prompt` list: whether it is a token id.
        struct Element(bool);
        impl<'de> Deserialize<'de> for Element {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(d)?;
                Ok(Element(value.is_number()))
            }
        }
        struct Count;
        impl<'de> serde::de::Visitor<'de> for Count {
            type Value = PromptCount;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a prompt")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PromptCount, A::Error> {
                let (mut count, mut ids) = (0u64, false);
                while let Some(Element(id)) = seq.next_element::<Element>()? {
                    count += 1;
                    ids |= id;
                }
                Ok(PromptCount(if ids { 1 } else { count.max(1) }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PromptCount, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(PromptCount(1))
            }
            fn visit_str<E>(self, _: &str) -> Result<PromptCount, E> {
                Ok(PromptCount(1))
            }
            fn visit_bool<E>(self, _: bool) -> Result<PromptCount, E> {
                Ok(PromptCount(1))
            }
            fn visit_i64<E>(self, _: i64) -> Result<PromptCount, E> {
                Ok(PromptCount(1))
            }
            fn visit_u64<E>(self, _: u64) -> Result<PromptCount, E> {
                Ok(PromptCount(1))
            }
            fn visit_f64<E>(self, _: f64) -> Result<PromptCount, E> {
                Ok(PromptCount(1))
            }
            fn visit_unit<E>(self) -> Result<PromptCount, E> {
                Ok(PromptCount(1))
            }
        }
        deserializer.deserialize_any(Count)
    }
}

/// A positive count given as a JSON number or a string holding one (a fraction rounded up).
fn count_of(value: &serde_json::Value) -> Option<u64> {
    let number = match value {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (number.is_finite() && number > 0.0).then(|| number.ceil().min(MAX_CALL_TOKENS as f64) as u64)
}

/// The most choices (`n`) a token-limited call may ask for.
pub const MAX_CHOICES: u64 = 128;

/// What a call reserves under a TOKEN policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// At least 1, at most [`MAX_CALL_TOKENS`].
    pub tokens: u64,
    /// The estimate of the prompt within `tokens`: a token per 4 bytes of body.
    pub prompt: u64,
    /// The cap the gateway adds to the request it forwards (member, tokens) when the call
    /// names none: the answer then cannot take more than was reserved.
    pub cap: Option<(&'static str, u64)>,
}

/// What a call of `path` reserves under a TOKEN policy: [`reserve`] for the model API
/// the path names.
pub fn reservation(path: &str, body: &[u8], default_completion: u64) -> Result<Reserved, String> {
    reserve(model_api(path), body, default_completion)
}

/// What a call of model API `api` reserves under a TOKEN policy: the estimate of its
/// prompt plus the completion tokens the answer may take. The API's own cap (chat:
/// the larger of `max_completion_tokens` and `max_tokens`; completions: `max_tokens`;
/// responses: `max_output_tokens`), else `default_completion`, which the gateway then adds
/// as the request's cap; times the answers asked for (the larger of `n` and `best_of`,
/// times the prompts of a completions `prompt` list); embeddings take none.
///
/// A model call's body must be one JSON object whose caps and counts are positive
/// numbers, `n` and `best_of` at most [`MAX_CHOICES`], with no member some server reads as
/// a cap that the gateway does not count (`MAX_TOKENS`, `n_predict`, …): the error names
/// the member and the rule. What the gateway cannot read, a lax model server might, and
/// take more than was reserved. Any other call is refused: its answer cannot be counted.
pub fn reserve(
    api: Option<ModelApi>,
    body: &[u8],
    default_completion: u64,
) -> Result<Reserved, String> {
    let prompt = estimate_tokens(body.len()).min(MAX_CALL_TOKENS);
    let reserved = |completion: u64, cap| Reserved {
        tokens: prompt.saturating_add(completion).clamp(1, MAX_CALL_TOKENS),
        prompt,
        cap,
    };
    let Some(api) = api else {
        return Err(
            "path: under a token limit only chat/completions, completions, embeddings and responses calls are served (their tokens can be counted)"
                .into(),
        );
    };
    let caps = serde_json::from_slice::<Caps>(body).map_err(|e| {
        format!("body: a token-limited model call's body must be one JSON object ({e})")
    })?;
    if let Some(member) = &caps.unread {
        return Err(format!(
            "{member}: not counted by the gateway, which a model server may read as a cap or a count; use max_tokens (max_output_tokens for responses) and n"
        ));
    }
    let given = [
        ("max_completion_tokens", caps.max_completion_tokens),
        ("max_tokens", caps.max_tokens),
        ("max_output_tokens", caps.max_output_tokens),
    ];
    if let Some((name, _)) = given.iter().find(|(_, cap)| matches!(cap, Some(None))) {
        return Err(format!(
            "{name}: must be a positive number of tokens on a token-limited API (or left out)"
        ));
    }
    let mut answers = 1u64;
    for (name, count) in [("n", caps.n), ("best_of", caps.best_of)] {
        match count {
            None => {}
            Some(Some(n)) if n <= MAX_CHOICES => answers = answers.max(n),
            Some(_) => {
                return Err(format!(
                    "{name}: must be a whole number from 1 to {MAX_CHOICES} on a token-limited API"
                ))
            }
        }
    }
    if api == ModelApi::Embeddings {
        return Ok(reserved(0, None));
    }
    if api == ModelApi::Completions {
        answers = answers.saturating_mul(caps.prompts.unwrap_or(1));
    }
    // The largest cap this API reads: servers differ in which one of two they take.
    let cap = given
        .iter()
        .filter(|(name, _)| api.reads_cap(name))
        .filter_map(|(_, cap)| cap.flatten())
        .max();
    Ok(match cap {
        Some(cap) => reserved(cap.saturating_mul(answers), None),
        None => reserved(
            default_completion.saturating_mul(answers),
            api.cap_member().map(|member| (member, default_completion)),
        ),
    })
}

/// What an answer's `Content-Type` says it is, as far as usage goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Media {
    #[default]
    Other,
    Json,
    EventStream,
}

impl Media {
    /// The media of a `Content-Type` value (parameters ignored).
    pub fn of(content_type: &[u8]) -> Self {
        let essence = content_type
            .split(|b| *b == b';')
            .next()
            .unwrap_or(&[])
            .trim_ascii();
        if essence.eq_ignore_ascii_case(b"application/json") {
            Media::Json
        } else if essence.eq_ignore_ascii_case(b"text/event-stream") {
            Media::EventStream
        } else {
            Media::Other
        }
    }
}

#[derive(Debug)]
enum Shape {
    Json {
        head: Vec<u8>,
        /// The last bytes (between [`JSON_END`] and twice that).
        tail: Vec<u8>,
        /// Whether bytes between `head` and `tail` were dropped.
        gap: bool,
    },
    Events {
        /// The line not yet ended.
        partial: Vec<u8>,
        overflow: bool,
        /// Body bytes seen.
        total: usize,
        /// The first [`SAMPLE`] bytes: an answer without usage is estimated from their
        /// text (read only then; lines are otherwise read only where they hold a usage
        /// object).
        sample: Vec<u8>,
    },
}

/// Bytes of an event stream kept for the estimate of an answer without usage.
const SAMPLE: usize = 2 * 1024;

/// Reads one answer's usage from its body bytes as they pass.
#[derive(Debug)]
pub struct UsageTap {
    shape: Shape,
    /// The last usage an event reported.
    reported: Option<Usage>,
    /// Bytes of the request body (for the estimate of the prompt).
    request_bytes: usize,
}

impl UsageTap {
    /// A tap for an answer of `media` to a model call with `request_bytes` of body; `None`
    /// for answers that are neither JSON nor an event stream.
    pub fn for_answer(media: Media, request_bytes: usize) -> Option<Self> {
        let shape = match media {
            Media::Json => Shape::Json {
                head: Vec::new(),
                tail: Vec::new(),
                gap: false,
            },
            Media::EventStream => Shape::Events {
                partial: Vec::new(),
                overflow: false,
                total: 0,
                sample: Vec::new(),
            },
            Media::Other => return None,
        };
        Some(Self {
            shape,
            reported: None,
            request_bytes,
        })
    }

    /// Reads `bytes`, the next piece of the body (decoded: the relay takes chunked coding
    /// apart as it checks it).
    pub fn feed(&mut self, bytes: &[u8]) {
        match &mut self.shape {
            Shape::Json { head, tail, gap } => {
                let into_head = JSON_END.saturating_sub(head.len()).min(bytes.len());
                head.extend_from_slice(&bytes[..into_head]);
                tail.extend_from_slice(&bytes[into_head..]);
                if tail.len() > 2 * JSON_END {
                    tail.drain(..tail.len() - JSON_END);
                    *gap = true;
                }
            }
            Shape::Events { .. } => self.feed_events(bytes),
        }
    }

    /// The next bytes of an event stream: kept while the sample lasts; the line they end
    /// (joined with what was held) and the lines within them that hold the usage key are
    /// read; the start of the next line is held.
    fn feed_events(&mut self, bytes: &[u8]) {
        let Shape::Events {
            partial,
            overflow,
            total,
            sample,
        } = &mut self.shape
        else {
            return;
        };
        *total += bytes.len();
        if sample.len() < SAMPLE {
            let room = SAMPLE - sample.len();
            sample.extend_from_slice(&bytes[..room.min(bytes.len())]);
        }
        let Some(first_end) = memchr::memchr(b'\n', bytes) else {
            if partial.len() + bytes.len() > MAX_LINE {
                *overflow = true;
            } else if !*overflow {
                partial.extend_from_slice(bytes);
            }
            return;
        };
        let mut first = std::mem::take(partial);
        let skipped = std::mem::take(overflow);
        if !skipped {
            first.extend_from_slice(&bytes[..=first_end]);
            self.line(&first);
        }
        let last_end = memchr::memrchr(b'\n', bytes).unwrap_or(first_end);
        let region = &bytes[first_end + 1..=last_end];
        let mut done = 0;
        for at in usage_finder().find_iter(region) {
            if value_after(region, at, USAGE_KEY.len()).is_none() {
                continue;
            }
            let (start, end) = line_around(region, at);
            if start >= done {
                self.line(&region[start..end]);
                done = end;
            }
        }
        if let Shape::Events { partial, .. } = &mut self.shape {
            partial.extend_from_slice(&bytes[last_end + 1..]);
        }
    }

    /// One whole line of an event stream, read for the usage it reports.
    fn line(&mut self, line: &[u8]) {
        let Some(data) = line_data(line) else {
            return;
        };
        if data == b"[DONE]" || data.is_empty() {
            return;
        }
        let has_usage = usage_finder()
            .find_iter(data)
            .any(|at| value_after(data, at, USAGE_KEY.len()).is_some());
        if !has_usage {
            return;
        }
        if let Ok(event) = serde_json::from_slice::<Answer>(data) {
            if let Some(usage) = event.reported() {
                self.reported = Some(usage);
            }
        }
    }

    /// The usage of the answer, once it has ended or been cut short. An answer without
    /// reported usage is estimated from what was relayed.
    pub fn finish(mut self) -> Usage {
        if let Shape::Events {
            partial, overflow, ..
        } = &mut self.shape
        {
            let last = std::mem::take(partial);
            if !last.is_empty() && !*overflow {
                self.line(&last);
            }
        }
        let reported = match &self.shape {
            // A document that parses whole says its usage, even if the relay did not end
            // (the client may leave after the last byte it needed).
            Shape::Json { head, tail, gap } => json_usage(head, tail, *gap),
            Shape::Events { .. } => self.reported,
        };
        match reported {
            Some(usage) => usage,
            None => {
                let prompt = estimate_tokens(self.request_bytes);
                let text = match &self.shape {
                    Shape::Events { total, sample, .. } => sampled_text(sample, *total),
                    Shape::Json { .. } => 0,
                };
                let completion = estimate_tokens(text);
                Usage {
                    prompt,
                    completion,
                    total: prompt + completion,
                    estimated: true,
                    ..Usage::default()
                }
            }
        }
    }
}

/// Bytes of generated text in an event stream of `total` bytes, from its first bytes
/// (`sample`): the text of the sample's whole lines (of all of it, when it is the whole
/// stream), and past them the same share of the bytes.
fn sampled_text(sample: &[u8], total: usize) -> usize {
    let read = if total <= sample.len() {
        sample.len()
    } else {
        memchr::memrchr(b'\n', sample).map_or(0, |i| i + 1)
    };
    let text: usize = sample[..read]
        .split(|&b| b == b'\n')
        .filter_map(line_data)
        .filter(|data| *data != b"[DONE]")
        .map(text_bytes)
        .sum();
    if total > read && read > 0 {
        (text as u128 * total as u128 / read as u128) as usize
    } else {
        text
    }
}

/// The usage of a whole JSON answer kept as `head` and `tail` (`gap`: bytes between them
/// were dropped): parsed whole when it was kept whole, else the last `"usage"` object found
/// in the tail, then in the head.
fn json_usage(head: &[u8], tail: &[u8], gap: bool) -> Option<Usage> {
    if !gap {
        let whole = [head, tail].concat();
        return serde_json::from_slice::<Answer>(&whole)
            .ok()
            .and_then(|answer| answer.reported());
    }
    [tail, head].into_iter().find_map(usage_object)
}

/// The last `"usage": {…}` in `bytes` (a raw `"usage"` cannot be inside a JSON string,
/// whose quotes are escaped).
fn usage_object(bytes: &[u8]) -> Option<Usage> {
    let key = b"\"usage\"";
    let mut end = bytes.len();
    while let Some(at) = memchr::memmem::rfind(&bytes[..end], key) {
        end = at;
        let rest = bytes[at + key.len()..].trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b":") {
            let mut values = serde_json::Deserializer::from_slice(value).into_iter::<Reported>();
            if let Some(Ok(reported)) = values.next() {
                if reported.says_anything() {
                    return Some(reported.usage());
                }
            }
        }
    }
    None
}

/// The usage of one minute of one app's calls to one API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub project_id: Arc<str>,
    /// Empty for callers that are not apps (IAM users, anonymous calls of NONE APIs).
    pub app_id: Arc<str>,
    pub api_id: Arc<str>,
    /// Minutes since the epoch.
    pub minute: i64,
}

/// One model call's tokens as sums of one call (its answer is counted apart).
pub fn counts_of(usage: &Usage) -> UsageCounts {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    UsageCounts {
        calls: 1,
        prompt_tokens: n(usage.prompt),
        completion_tokens: n(usage.completion),
        total_tokens: n(usage.total),
        reasoning_tokens: n(usage.reasoning),
        cached_tokens: n(usage.cached),
        estimated_calls: i64::from(usage.estimated),
        ..UsageCounts::default()
    }
}

/// The book's shards: threads recording at once seldom wait on one another.
const SHARDS: usize = 16;

/// Calls summed per minute, app and API on this node, by answer and with model calls'
/// tokens, until whoever stores it takes it (the server writes it to the store in batches:
/// a call never waits on a write).
#[derive(Debug, Default)]
pub struct UsageBook {
    shards: [Mutex<Shard>; SHARDS],
    /// The app of calls made by no app, shared by all of them.
    no_app: NoApp,
}

#[derive(Debug)]
struct NoApp(Arc<str>);

impl Default for NoApp {
    fn default() -> Self {
        Self(Arc::from(""))
    }
}

/// Sums by key. Its keys come from the configuration (a caller names no key of its own),
/// so a fast hash is safe.
type Sums = HashMap<UsageKey, UsageCounts, foldhash::fast::RandomState>;

/// A shard's sums, found by the addresses of their key's names (and the minute). The names
/// are the snapshot's, shared by every call of the same app and API: a call hashes, compares
/// and clones no name. The same names of two snapshots make two entries, summed when taken;
/// an entry holds its names, so no address is reused while it is there.
type Shard =
    HashMap<(usize, usize, usize, i64), (UsageKey, UsageCounts), foldhash::fast::RandomState>;

fn address(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>().addr()
}

/// Locks a shard, whatever a panicking holder left: the sums stay valid.
fn open(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

impl UsageBook {
    /// Counts a call of `project`'s `api` by `app` (none: a caller that is no app) in
    /// `minute` (since the epoch), answered `status`, with its tokens when it was a model
    /// call.
    pub fn record(
        &self,
        (project, app, api): (&Arc<str>, Option<&Arc<str>>, &Arc<str>),
        minute: i64,
        status: u16,
        usage: Option<&Usage>,
    ) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
        }
        let mut counts = UsageCounts::answered(status);
        if let Some(usage) = usage {
            counts.merge(&counts_of(usage));
        }
        let app = app.unwrap_or(&self.no_app.0);
        let shard = SHARD.with(|s| *s);
        open(&self.shards[shard])
            .entry((address(project), address(app), address(api), minute))
            .or_insert_with(|| {
                let key = UsageKey {
                    project_id: project.clone(),
                    app_id: app.clone(),
                    api_id: api.clone(),
                    minute,
                };
                (key, UsageCounts::default())
            })
            .1
            .merge(&counts);
    }

    /// Everything summed so far, leaving the book empty.
    pub fn take(&self) -> Vec<(UsageKey, UsageCounts)> {
        let mut all = Sums::default();
        for shard in &self.shards {
            for (key, counts) in std::mem::take(&mut *open(shard)).into_values() {
                all.entry(key).or_default().merge(&counts);
            }
        }
        all.into_iter().collect()
    }

    /// Sums taken but not stored go back, added to what came since.
    pub fn put_back(&self, rows: Vec<(UsageKey, UsageCounts)>) {
        let mut first = open(&self.shards[0]);
        for (key, counts) in rows {
            let at = (
                address(&key.project_id),
                address(&key.app_id),
                address(&key.api_id),
                key.minute,
            );
            first
                .entry(at)
                .or_insert_with(|| (key, UsageCounts::default()))
                .1
                .merge(&counts);
        }
    }
}

#[cfg(test)]
mod tests;
