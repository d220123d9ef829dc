use super::*;
use proptest::prelude::*;

/// How a test's body bytes are framed: chunked ones are taken apart by the relay's
/// [`ChunkedEnd`] before the tap reads them, as on the fast path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Plain,
    Chunked,
}

/// A tap behind the framing its bytes come in.
struct Tapped {
    tap: UsageTap,
    chunked: Option<crate::http_rules::ChunkedEnd>,
}

impl Tapped {
    fn feed(&mut self, bytes: &[u8]) {
        match &mut self.chunked {
            Some(chunked) => {
                let tap = &mut self.tap;
                // Broken coding ends the relay there; the tap has what came before.
                let _ = chunked.advance_with(bytes, |data| tap.feed(data));
            }
            None => self.tap.feed(bytes),
        }
    }

    fn finish(self) -> Usage {
        self.tap.finish()
    }
}

impl std::ops::Deref for Tapped {
    type Target = UsageTap;
    fn deref(&self) -> &UsageTap {
        &self.tap
    }
}

fn tap(path: &str, content_type: &str, framing: Framing) -> Tapped {
    assert!(is_model_path(path), "{path}");
    Tapped {
        tap: UsageTap::for_answer(Media::of(content_type.as_bytes()), 400).expect("a model call"),
        chunked: (framing == Framing::Chunked).then(Default::default),
    }
}

/// A chat completion streamed as OpenAI sends it with `include_usage`: text deltas, the
/// finishing chunk, then a usage-only chunk with empty `choices`.
const CHAT_STREAM: &str = concat!(
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":2,\"total_tokens\":14,\"prompt_tokens_details\":{\"cached_tokens\":8},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

/// A stream longer than the sample: 300 text chunks before the usage chunk.
fn long_stream() -> String {
    let mut out = String::new();
    for i in 0..300 {
        out.push_str(&format!(
            "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i:03}\"}}}}]}}\n\n"
        ));
    }
    let usage = CHAT_STREAM
        .find("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],")
        .expect("usage");
    out.push_str(&CHAT_STREAM[usage..]);
    out
}

fn chunked(body: &str, piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in body.as_bytes().chunks(piece) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn model_paths_are_recognised() {
    for path in [
        "/v1/infers/s/chat/completions",
        "/v1/infers/s/v1/completions/",
        "/v1/infers/s/embeddings?x=1",
        "/v1/infers/s/responses",
    ] {
        assert!(is_model_path(path), "{path}");
    }
    for path in [
        "/v1/infers/s/predict",
        "/v1/infers/s/chat",
        "/v1/infers/s/responses/x",
    ] {
        assert!(!is_model_path(path), "{path}");
    }
    assert_eq!(Media::of(b"Application/JSON; charset=utf-8"), Media::Json);
    assert_eq!(Media::of(b" text/event-stream"), Media::EventStream);
    assert_eq!(Media::of(b"text/plain"), Media::Other);
    assert!(UsageTap::for_answer(Media::Other, 0).is_none());
}

#[test]
fn a_json_answer_gives_its_usage_with_reasoning_and_cache() {
    let mut t = tap(
        "/s/chat/completions",
        "application/json; charset=utf-8",
        Framing::Plain,
    );
    t.feed(br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":30,"total_tokens":39,"#);
    t.feed(br#""completion_tokens_details":{"reasoning_tokens":21},"prompt_tokens_details":{"cached_tokens":4}}}"#);
    assert_eq!(
        t.finish(),
        Usage {
            prompt: 9,
            completion: 30,
            total: 39,
            reasoning: 21,
            cached: 4,
            estimated: false
        }
    );
}

#[test]
fn a_large_json_answer_is_read_from_its_ends_in_bounded_memory() {
    // An embedding answer of ~2 MB: its vectors, then its usage.
    let vector = format!("[{}]", vec!["0.0123456789"; 20_000].join(","));
    let data = vec![format!("{{\"object\":\"embedding\",\"embedding\":{vector}}}"); 8].join(",");
    let body = format!(
        "{{\"object\":\"list\",\"data\":[{data}],\"model\":\"e\",\"usage\":{{\"prompt_tokens\":42,\"total_tokens\":42}}}}"
    );
    assert!(body.len() > 1_000_000);
    let mut t = tap("/s/embeddings", "application/json", Framing::Plain);
    for piece in body.as_bytes().chunks(16 * 1024) {
        t.feed(piece);
        if let Shape::Json { head, tail, .. } = &t.shape {
            assert!(head.len() + tail.len() <= 3 * JSON_END);
        }
    }
    let usage = t.finish();
    assert_eq!(
        (usage.prompt, usage.total, usage.estimated),
        (42, 42, false)
    );
    // Usage first, then a large body: found in the head.
    let first =
        format!("{{\"usage\":{{\"prompt_tokens\":7,\"total_tokens\":7}},\"data\":[{data}]}}");
    let mut t = tap("/s/embeddings", "application/json", Framing::Plain);
    t.feed(first.as_bytes());
    assert_eq!(t.finish().total, 7);
    // A `"usage"` inside a string is not a key.
    let tricky = format!("{{\"data\":[{data}],\"text\":\"say \\\"usage\\\": {{\\\"total_tokens\\\": 999}}\",\"usage\":{{\"prompt_tokens\":3,\"total_tokens\":3}}}}");
    let mut t = tap("/s/embeddings", "application/json", Framing::Plain);
    t.feed(tricky.as_bytes());
    assert_eq!(t.finish().total, 3);
}

#[test]
fn the_responses_api_names_are_read() {
    let mut t = tap("/s/responses", "application/json", Framing::Plain);
    t.feed(br#"{"object":"response","usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12,"output_tokens_details":{"reasoning_tokens":3}}}"#);
    let usage = t.finish();
    assert_eq!(
        (usage.prompt, usage.completion, usage.total, usage.reasoning),
        (5, 7, 12, 3)
    );
    // Streamed: the last event nests the response.
    let mut t = tap("/s/responses", "text/event-stream", Framing::Plain);
    t.feed(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n");
    t.feed(b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1,\"total_tokens\":6}}}\n\n");
    assert_eq!(t.finish().total, 6);
}

#[test]
fn a_stream_gives_the_usage_of_its_last_usage_chunk() {
    let mut t = tap("/s/chat/completions", "text/event-stream", Framing::Plain);
    t.feed(CHAT_STREAM.as_bytes());
    assert_eq!(
        t.finish(),
        Usage {
            prompt: 12,
            completion: 2,
            total: 14,
            reasoning: 0,
            cached: 8,
            estimated: false
        }
    );
}

#[test]
fn a_long_stream_cut_short_is_estimated_from_its_sample() {
    let stream = long_stream();
    let cut = stream.find("\"usage\"").expect("usage");
    let mut t = tap("/s/chat/completions", "text/event-stream", Framing::Plain);
    t.feed(&stream.as_bytes()[..cut]);
    let usage = t.finish();
    // 300 words of 4 bytes: 1200 bytes, 300 tokens; the estimate scales the sample's share.
    assert!(usage.estimated);
    assert!((270..=330).contains(&usage.completion), "{usage:?}");
}

#[test]
fn a_stream_cut_short_is_estimated_from_the_relayed_text() {
    let mut t = tap("/s/chat/completions", "text/event-stream", Framing::Plain);
    let cut = CHAT_STREAM.find("\"usage\"").expect("usage chunk");
    t.feed(&CHAT_STREAM.as_bytes()[..cut]);
    let usage = t.finish();
    // "Hello there" is 11 bytes: 3 tokens; 400 request bytes: 100.
    assert_eq!(
        usage,
        Usage {
            prompt: 100,
            completion: 3,
            total: 103,
            estimated: true,
            ..Usage::default()
        }
    );
    // A JSON answer cut short has nothing to read.
    let mut t = tap("/s/completions", "application/json", Framing::Plain);
    t.feed(br#"{"usage":{"prompt_tokens":1,"#);
    assert!(t.finish().estimated);
}

proptest! {
    /// However the bytes are split, and whether or not the upstream sent them chunked,
    /// the usage read is the same.
    #[test]
    fn splits_and_chunking_do_not_change_the_count(
        piece in 1usize..200,
        cuts in proptest::collection::vec(0usize..40_000, 0..12),
        chunk_coded in any::<bool>(),
        long in any::<bool>(),
    ) {
        let stream = if long { long_stream() } else { CHAT_STREAM.to_owned() };
        let body = if chunk_coded { chunked(&stream, piece) } else { stream.as_bytes().to_vec() };
        let framing = if chunk_coded { Framing::Chunked } else { Framing::Plain };
        let mut t = tap("/s/chat/completions", "text/event-stream", framing);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts.into_iter().chain([body.len()]) {
            t.feed(&body[from..cut]);
            from = cut;
        }
        let usage = t.finish();
        prop_assert_eq!((usage.prompt, usage.completion, usage.total, usage.cached, usage.estimated), (12, 2, 14, 8, false));
    }

    /// Whatever the body, a reservation covers the prompt estimate and stays within
    /// [1, MAX_CALL_TOKENS]; any other call than a model call is always reserved for.
    #[test]
    fn reservations_are_bounded(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        default in 1u64..100_000,
    ) {
        for path in ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/generate"] {
            match super::reservation(path, &body, default) {
                Ok(r) => {
                    prop_assert_eq!(r.prompt, (body.len() as u64).div_ceil(4));
                    prop_assert!((1..=super::MAX_CALL_TOKENS).contains(&r.tokens));
                    prop_assert!(r.tokens >= r.prompt);
                }
                // Any other path is refused; a model call's body may be.
                Err(why) => prop_assert!(model_api(path).is_some() || why.starts_with("path:"), "{}", why),
            }
        }
    }

    /// What a token-limited model call forwards lets its answer take no more than it
    /// reserved, as a model server reads the forwarded body (the last of a member given
    /// twice; the largest cap; `n` choices), whatever members and values the client sent.
    #[test]
    fn forwarded_calls_cannot_take_more_than_they_reserve(
        members in proptest::collection::vec((
            prop::sample::select(vec!["max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "stream", "model", "max\\u005ftokens", "MAX_TOKENS", "n_predict"]),
            prop::sample::select(vec!["1", "0", "-3", "2.5", "null", "\"250\"", "\"lots\"", "true", "[9]", "70000", "1e300", "129", "{}"]),
        ), 0..6),
        spaces in prop::sample::select(vec!["", " ", "\n\t "]),
        default in 1u64..5_000,
        path in prop::sample::select(vec!["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"]),
    ) {
        let body = format!("{{{}}}{spaces}", members
            .iter()
            .map(|(k, v)| format!("{spaces}\"{k}\"{spaces}:{spaces}{v}"))
            .collect::<Vec<_>>()
            .join(","));
        let Ok(reserved) = super::reservation(path, body.as_bytes(), default) else {
            return Ok(());
        };
        let api = model_api(path).expect("a model path");
        let forwarded = forwarded_request(api, body.as_bytes(), reserved.cap)
            .expect("an object")
            .map_or(body.clone().into_bytes(), |(b, _)| b);
        let seen: serde_json::Value = serde_json::from_slice(&forwarded).expect("forwarded JSON");
        if model_api(path) == Some(ModelApi::Embeddings) {
            prop_assert_eq!(reserved.tokens, reserved.prompt.max(1));
            return Ok(());
        }
        let count = |name: &str| seen.get(name).and_then(count_of);
        // Only the caps this API's servers read bound its answer.
        let cap = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
            .into_iter()
            .filter(|name| api.reads_cap(name))
            .filter_map(count)
            .max();
        // Each API reads its own cap: a forwarded request always holds one it reads.
        let own = if path.ends_with("/responses") { "max_output_tokens" } else { "max_tokens" };
        prop_assert!(count(own).is_some() || cap.is_some(), "{}", String::from_utf8_lossy(&forwarded));
        let n = count("n").unwrap_or(1).max(count("best_of").unwrap_or(1));
        prop_assert!(n <= super::MAX_CHOICES);
        // Saturated reservations are refused by any limit (none reaches MAX_CALL_TOKENS).
        let needed = u128::from(cap.expect("a cap")) * u128::from(n) + u128::from(reserved.prompt);
        prop_assert!(reserved.tokens == super::MAX_CALL_TOKENS || needed <= u128::from(reserved.tokens));
    }

    /// Hostile bodies never panic and never report more than they say.
    #[test]
    fn hostile_bodies_are_harmless(body in proptest::collection::vec(any::<u8>(), 0..600), chunk_coded in any::<bool>()) {
        let framing = if chunk_coded { Framing::Chunked } else { Framing::Plain };
        for content_type in ["text/event-stream", "application/json"] {
            let mut t = tap("/s/chat/completions", content_type, framing);
            t.feed(&body);
            let _ = t.finish();
        }
    }
}

#[test]
fn streamed_requests_are_asked_for_usage_and_nothing_else_changes() {
    let path = "/v1/infers/s/chat/completions";
    let body =
        br#"{"model": "m", "stream": true, "messages": [{"role": "user", "content": "}"}]}  "#;
    let asked = ask_for_usage(path, body).expect("asked");
    assert_eq!(
        std::str::from_utf8(&asked).expect("utf-8"),
        r#"{"model": "m", "stream": true, "messages": [{"role": "user", "content": "}"}],"stream_options":{"include_usage":true}}  "#
    );
    let parsed: serde_json::Value = serde_json::from_slice(&asked).expect("still JSON");
    assert_eq!(parsed["stream_options"]["include_usage"], true);
    // Not streamed, asking already, other stream options, not a chat path, not JSON.
    for (path, body) in [
        (path, &br#"{"stream": false, "messages": []}"#[..]),
        (path, br#"{"messages": []}"#),
        (
            path,
            br#"{"stream": true, "stream_options": {"include_usage": true}}"#,
        ),
        (
            path,
            br#"{"stream": true, "stream_options": {"include_usage": false}}"#,
        ),
        ("/v1/infers/s/embeddings", br#"{"stream": true}"#),
        ("/v1/infers/s/responses", br#"{"stream": true}"#),
        (path, br#"["stream", true]"#),
        (path, b"stream=true"),
    ] {
        assert!(
            ask_for_usage(path, body).is_none(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(
        ask_for_usage(path, br#"{"stream":true}"#).as_deref(),
        Some(&br#"{"stream":true,"stream_options":{"include_usage":true}}"#[..])
    );
}

proptest! {
    /// The filter drops exactly the usage-only chunk: what passes is the stream as it
    /// would have been without it, however the bytes are split.
    #[test]
    fn the_usage_chunk_is_dropped_and_nothing_else(cuts in proptest::collection::vec(0usize..40_000, 0..12), crlf in any::<bool>(), long in any::<bool>()) {
        let stream = if long { long_stream() } else { CHAT_STREAM.to_owned() };
        let with_usage = if crlf { stream.replace('\n', "\r\n") } else { stream };
        let usage_event = with_usage
            .split_inclusive(if crlf { "\r\n\r\n" } else { "\n\n" })
            .find(|e| e.contains("\"usage\""))
            .expect("usage event")
            .to_owned();
        let without = with_usage.replace(&usage_event, "");
        let body = with_usage.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        cuts.sort_unstable();
        let mut filter = UsageChunkFilter::default();
        let mut out = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([body.len()]) {
            filter.push(&body[from..cut], &mut out);
            from = cut;
        }
        filter.finish(&mut out);
        prop_assert_eq!(String::from_utf8(out).expect("utf-8"), without);
    }

    /// Whatever the upstream sends, every byte but a usage chunk's comes out, in order.
    #[test]
    fn other_bytes_pass_in_order(body in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'd'), Just(b':'), any::<u8>()], 0..400)) {
        let mut filter = UsageChunkFilter::default();
        let mut out = Vec::new();
        filter.push(&body, &mut out);
        filter.finish(&mut out);
        prop_assert_eq!(out, body);
    }
}

/// OpenAI sends `"usage":null` in every chunk of a stream that asked for usage: those are
/// neither parsed for usage nor dropped.
#[test]
fn null_usage_in_every_chunk_is_passed_over() {
    let stream = CHAT_STREAM.replace("\"choices\":[{", "\"usage\":null,\"choices\":[{");
    assert_eq!(stream.matches("\"usage\":null").count(), 3);
    let mut t = tap("/s/chat/completions", "text/event-stream", Framing::Plain);
    t.feed(stream.as_bytes());
    assert_eq!(t.finish().total, 14);
    let mut filter = UsageChunkFilter::default();
    let mut out = Vec::new();
    filter.push(stream.as_bytes(), &mut out);
    filter.finish(&mut out);
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(out.matches("\"usage\":null").count(), 3);
    assert!(!out.contains("\"total_tokens\""), "{out}");
}

#[test]
fn hostile_answers_stay_bounded() {
    // A line without end never grows the filter past the longest line.
    let mut filter = UsageChunkFilter::default();
    let mut out = Vec::new();
    let piece = vec![b'x'; 64 * 1024];
    for _ in 0..(MAX_LINE / piece.len() + 2) {
        filter.push(&piece, &mut out);
        assert!(filter.held.len() <= MAX_LINE);
    }
    filter.finish(&mut out);
    assert_eq!(out.len(), piece.len() * (MAX_LINE / piece.len() + 2));
    // Absurd counts are held to what one call can be.
    let mut t = tap("/s/chat/completions", "application/json", Framing::Plain);
    t.feed(br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615,"total_tokens":18446744073709551615}}"#);
    let usage = t.finish();
    assert_eq!(
        (usage.prompt, usage.completion),
        (MAX_CALL_TOKENS, MAX_CALL_TOKENS)
    );
    let mut sums = UsageCounts::default();
    for _ in 0..1000 {
        sums.merge(&counts_of(&usage));
    }
    assert!(sums.total_tokens < i64::MAX);
    // An object named usage that says nothing is not the usage.
    assert!(usage_object(
        br#"{"usage":{"prompt_tokens":5,"total_tokens":5},"x":{"usage":{"type":"string"}}}"#
    )
    .is_some_and(|u| u.total == 5));
}

#[test]
fn a_null_stream_options_is_the_clients() {
    let path = "/v1/infers/s/chat/completions";
    assert!(ask_for_usage(path, br#"{"stream": true, "stream_options": null}"#).is_none());
}

#[test]
fn reservations_take_the_cap_the_model_server_reads() {
    let reserve = |path: &str, body: &[u8], default: u64| {
        super::reservation(path, body, default)
            .unwrap_or_else(|why| panic!("{why}: {}", String::from_utf8_lossy(body)))
    };
    let chat = "/v1/chat/completions";
    let body = br#"{"model":"m","messages":[],"max_tokens":100}"#;
    let prompt = (body.len() as u64).div_ceil(4);
    assert_eq!(
        reserve(chat, body, 1024),
        Reserved {
            tokens: prompt + 100,
            prompt,
            cap: None
        }
    );
    // The largest cap given counts (servers differ in which one they read); n multiplies
    // the choices.
    let both = br#"{"max_tokens":100,"max_completion_tokens":7,"n":3}"#;
    assert_eq!(
        reserve(chat, both, 1024).tokens,
        both.len().div_ceil(4) as u64 + 300
    );
    // No cap: the policy's default, which the forwarded request then names; an embedding
    // reserves its input alone.
    let none = br#"{"model":"m"}"#;
    assert_eq!(
        reserve(chat, none, 500),
        Reserved {
            tokens: 4 + 500,
            prompt: 4,
            cap: Some(("max_tokens", 500))
        }
    );
    assert_eq!(
        reserve("/v1/responses", none, 500).cap,
        Some(("max_output_tokens", 500))
    );
    assert_eq!(reserve("/v1/embeddings", none, 500).tokens, 4);
    // Percent-escapes are read as the server decodes them.
    assert_eq!(
        reserve("/v1/chat/complet%69ons", none, 500).cap,
        Some(("max_tokens", 500))
    );
    // Another path is refused: its answer is not read.
    assert!(super::reservation("/v1/generate", b"not json", 500).is_err());
    // A member given twice counts as the server reads it: the last one.
    let twice = br#"{"max_tokens":1,"max_tokens":9000}"#;
    assert_eq!(
        reserve(chat, twice, 10).tokens,
        twice.len().div_ceil(4) as u64 + 9000
    );
    // Numbers in strings and fractions count as numbers.
    let lax = br#"{"max_tokens":"250"}"#;
    assert_eq!(
        reserve(chat, lax, 10).tokens,
        lax.len().div_ceil(4) as u64 + 250
    );
    let frac = br#"{"max_tokens":2.5}"#;
    assert_eq!(
        reserve(chat, frac, 10).tokens,
        frac.len().div_ceil(4) as u64 + 3
    );
    // What the gateway cannot read as a cap, a lax server might: refused, naming the member.
    for (odd, member) in [
        (&br#"{"max_tokens":-5}"#[..], "max_tokens:"),
        (br#"{"max_completion_tokens":0}"#, "max_completion_tokens:"),
        (br#"{"max_tokens":[1]}"#, "max_tokens:"),
        (br#"{"max_tokens":null}"#, "max_tokens:"),
        (br#"{"max_output_tokens":"lots"}"#, "max_output_tokens:"),
        (br#"{"n":129}"#, "n:"),
        (br#"{"n":0}"#, "n:"),
        (br#"not json"#, "body:"),
        (br#"[1,2]"#, "body:"),
        (b"", "body:"),
        (b"\xef\xbb\xbf{\"max_tokens\":5}", "body:"),
        (br#"{"max_tokens":NaN}"#, "body:"),
        (br#"{"max_tokens":1} {"max_tokens":99999}"#, "body:"),
        (br#"{"max_tokens":"\ud800"}"#, "body:"),
    ] {
        let why = super::reservation(chat, odd, 10).expect_err("refused");
        assert!(
            why.starts_with(member),
            "{why}: {}",
            String::from_utf8_lossy(odd)
        );
    }
    // Bounded whatever the request asks.
    let huge = br#"{"max_tokens":1e300,"n":128}"#;
    assert_eq!(reserve(chat, huge, 10).tokens, super::MAX_CALL_TOKENS);
}

#[test]
fn a_cap_is_added_beside_the_usage_request() {
    let chat = ModelApi::ChatCompletions;
    let (body, asked) = forwarded_request(chat, br#"{"stream":true} "#, Some(("max_tokens", 64)))
        .expect("an object")
        .expect("edited");
    assert!(asked);
    assert_eq!(
        std::str::from_utf8(&body).expect("utf-8"),
        r#"{"stream":true,"stream_options":{"include_usage":true},"max_tokens":64} "#
    );
    let (body, asked) = forwarded_request(chat, b"{ }", Some(("max_tokens", 7)))
        .expect("an object")
        .expect("edited");
    assert!(!asked);
    assert_eq!(body, br#"{ "max_tokens":7}"#);
    // A capped body that is not an object is never forwarded uncapped.
    assert!(forwarded_request(chat, b"[1]", Some(("max_tokens", 7))).is_err());
    assert_eq!(forwarded_request(chat, b"[1]", None), Ok(None));
}

#[test]
fn only_the_caps_and_counts_a_server_reads_are_reserved_for() {
    let reserve = |path: &str, body: &str| super::reservation(path, body.as_bytes(), 10);
    let chat = "/v1/chat/completions";
    // A cap another API reads bounds nothing here: the default is reserved and added.
    let other = r#"{"max_output_tokens":1}"#;
    let r = reserve(chat, other).expect("reserved");
    assert_eq!((r.tokens, r.cap), (6 + 10, Some(("max_tokens", 10))));
    let r = reserve("/v1/responses", r#"{"max_tokens":1}"#).expect("reserved");
    assert_eq!(r.cap, Some(("max_output_tokens", 10)));
    // Names some server reads as a cap or a count, which the gateway does not count.
    for (body, member) in [
        (r#"{"max_tokens":1,"MAX_TOKENS":100000}"#, "MAX_TOKENS:"),
        ("{\"max_to\u{212a}ens\":100000}", "max_to\u{212a}ens:"),
        (r#"{"max_tokens":1,"n_predict":-1}"#, "n_predict:"),
        (r#"{"max_new_tokens":9000}"#, "max_new_tokens:"),
        (r#"{"N":50}"#, "N:"),
        (r#"{"best_of":500}"#, "best_of:"),
    ] {
        let why = reserve(chat, body).expect_err(body);
        assert!(why.starts_with(member), "{why}");
    }
    // Every answer asked for is reserved: n, best_of, and each prompt of a list.
    let r = reserve(chat, r#"{"max_tokens":100,"best_of":3,"n":2}"#).expect("reserved");
    assert_eq!(r.tokens - r.prompt, 300);
    let prompts = r#"{"prompt":["a","b","c","d"],"max_tokens":100}"#;
    let r = reserve("/v1/completions", prompts).expect("reserved");
    assert_eq!(r.tokens - r.prompt, 400);
    let ids = r#"{"prompt":[1,2,3,4],"max_tokens":100}"#;
    let r = reserve("/v1/completions", ids).expect("reserved");
    assert_eq!(r.tokens - r.prompt, 100);
    let lists = r#"{"prompt":[[1],[2],[3]],"max_tokens":100}"#;
    let r = reserve("/v1/completions", lists).expect("reserved");
    assert_eq!(r.tokens - r.prompt, 300);
    // Any other path is refused: its answer cannot be counted.
    let why = reserve("/v1/invocations", r#"{"max_tokens":1}"#).expect_err("refused");
    assert!(why.starts_with("path:"), "{why}");
}

#[test]
fn the_upstreams_path_can_name_the_model_api() {
    assert_eq!(
        model_api_at("/v1/chat/completions", ""),
        Some(ModelApi::ChatCompletions)
    );
    assert_eq!(
        model_api_at("/v1/chat/completions/", "/"),
        Some(ModelApi::ChatCompletions)
    );
    assert_eq!(
        model_api_at("/v1/chat", "/completions"),
        Some(ModelApi::ChatCompletions)
    );
    assert_eq!(
        model_api_at("/v1", "/chat/complet%69ons"),
        Some(ModelApi::ChatCompletions)
    );
    assert_eq!(
        model_api_at("", "/v1/embeddings"),
        Some(ModelApi::Embeddings)
    );
    assert_eq!(model_api_at("/v1", "/predict"), None);
    assert_eq!(model_api_at("/v1/chat/completions", "/x"), None);
    assert_eq!(model_api_at("", ""), None);
}

#[test]
fn a_stream_cut_in_an_escape_is_estimated_without_a_panic() {
    for cut in [
        &b"data: {\"choices\":[{\"delta\":{\"content\":\"\\"[..],
        b"data: {\"choices\":[{\"delta\":{\"content\":\"ab\\",
        b"data: {\"choices\":[{\"delta\":{\"content\":\"ab\\\n\n",
    ] {
        let mut t = tap("/s/chat/completions", "text/event-stream", Framing::Plain);
        t.feed(cut);
        assert!(t.finish().estimated);
    }
}
