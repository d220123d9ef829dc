//! `infergate-load`: the load generator of `bench/`. It keeps HTTP/1.1 connections open and
//! sends requests signed with SDK-HMAC-SHA256 (a fresh signature per request, or one signature
//! replayed), either as fast as answers come back (closed loop) or on a fixed schedule (open
//! loop, `--rate`), or measures the time to the first body frame (`--first-event`). It prints
//! one JSON object.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

mod sse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SignMode {
    /// A new `X-Sdk-Date` and signature for every request.
    Fresh,
    /// One signature made at the start, replayed (valid for the 15-minute window).
    Once,
}

#[derive(Debug, Parser)]
#[command(
    name = "infergate-load",
    about = "Load generator for infergate's benchmark suite"
)]
struct Args {
    /// Target URL (http, or https with --cacert).
    #[arg(required_unless_present_any = ["time_sha256", "serve_sse"])]
    url: Option<String>,
    /// Load nothing: time SHA-256 over a body of --body-bytes (what the gateway hashes for
    /// each signed call) on this thread, and print the microseconds one hash takes.
    #[arg(long)]
    time_sha256: bool,
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// Send a body of this many bytes (a JSON string), signed by its SHA-256.
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
    /// Sign with this AppKey (needs --app-secret); unsigned without.
    #[arg(long)]
    app_key: Option<String>,
    #[arg(long)]
    app_secret: Option<String>,
    #[arg(long, value_enum, default_value = "fresh")]
    sign: SignMode,
    /// Open connections.
    #[arg(short = 'c', long, default_value_t = 32)]
    connections: usize,
    /// Seconds to run.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Open loop: send this many requests per second in all, on schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Send this many requests one after another and time the first body frame of each.
    #[arg(long)]
    first_event: Option<usize>,
    /// Extra header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Open --connections streams at once, one request each, and time each one's first
    /// body frame and the gaps between its frames until it ends.
    #[arg(long)]
    streams: bool,
    /// With --streams: the requests are made (and signed) first, then the streams open at
    /// this wall-clock time (Unix milliseconds), so that two clients started together
    /// begin their bursts at the same moment whatever each spent making its requests.
    #[arg(long)]
    start_at_ms: Option<u64>,
    /// Load nothing: serve a `text/event-stream` answer to every request on loopback (an
    /// event every --every-ms, --events of them), printing the address first.
    #[arg(long)]
    serve_sse: bool,
    #[arg(long, default_value_t = 50)]
    events: usize,
    #[arg(long, default_value_t = 100)]
    every_ms: u64,
    /// For an https URL: the PEM file of the CA its certificate must chain to.
    #[arg(long)]
    cacert: Option<std::path::PathBuf>,
    /// Over TLS, resume sessions (tickets) on new connections; without, every connection
    /// makes a full handshake.
    #[arg(long)]
    tls_resume: bool,
    /// A new connection for every request (closed once its answer is read).
    #[arg(long)]
    new_connection: bool,
    /// Runtime threads (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What every request shares.
struct Target {
    addr: SocketAddr,
    /// Over TLS: the client's settings and the name its certificate must have.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    new_connection: bool,
    method: Method,
    host: String,
    path: String,
    query: String,
    path_and_query: Uri,
    body: Bytes,
    extra: Vec<(HeaderName, HeaderValue)>,
    key: Option<(String, Vec<u8>)>,
    /// The replayed `(x-sdk-date, authorization)` in `once` mode.
    once: Option<(String, String)>,
}

impl Target {
    fn signature(&self, date: &str) -> Option<String> {
        let (access, secret) = self.key.as_ref()?;
        let headers = [
            ("host".to_owned(), self.host.clone()),
            (infergate_sign::HEADER_SDK_DATE.to_owned(), date.to_owned()),
        ];
        let signed = infergate_sign::sign(
            access,
            secret,
            self.method.as_str(),
            &self.path,
            &self.query,
            &headers,
            &self.body,
        );
        Some(signed.authorization.header_value())
    }

    fn request(&self, dates: &mut DateCache) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path_and_query.clone())
            .header(http::header::HOST, &self.host);
        let signed = match &self.once {
            Some((date, auth)) => Some((date.clone(), auth.clone())),
            None if self.key.is_some() => {
                let date = dates.now().to_owned();
                self.signature(&date).map(|auth| (date, auth))
            }
            None => None,
        };
        if let Some((date, auth)) = signed {
            builder = builder
                .header(infergate_sign::HEADER_SDK_DATE, date)
                .header(http::header::AUTHORIZATION, auth);
        }
        if !self.body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder
            .body(Full::new(self.body.clone()))
            .map_err(|e| format!("building the request: {e}"))?;
        // An extra header replaces one of the same name (`Host` among them), as with wrk.
        for (n, v) in &self.extra {
            request.headers_mut().insert(n, v.clone());
        }
        Ok(request)
    }
}

/// `X-Sdk-Date` of the current second, formatted once a second.
#[derive(Default)]
struct DateCache {
    second: i64,
    text: String,
}

impl DateCache {
    fn now(&mut self) -> &str {
        let now = chrono::Utc::now();
        if now.timestamp() != self.second || self.text.is_empty() {
            self.second = now.timestamp();
            self.text = infergate_sign::format_sdk_date(now);
        }
        &self.text
    }
}

/// What one connection measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    late_us: Vec<u32>,
    /// Between a stream's body frames.
    gaps_us: Vec<u32>,
    /// When each stream's request was written, from the start of the burst.
    sent_at_us: Vec<u32>,
    /// A stream's first event and its gaps as the kernel received them.
    kernel_latencies_us: Vec<u32>,
    kernel_gaps_us: Vec<u32>,
    first_error: Option<String>,
    ok: u64,
    non_2xx: u64,
    errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.late_us.extend(other.late_us);
        self.gaps_us.extend(other.gaps_us);
        self.sent_at_us.extend(other.sent_at_us);
        self.kernel_latencies_us.extend(other.kernel_latencies_us);
        self.kernel_gaps_us.extend(other.kernel_gaps_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
    let addr = target.addr;
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    match &target.tls {
        None => http1(TokioIo::new(stream)).await,
        Some((connector, name)) => {
            let tls = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
            http1(TokioIo::new(tls)).await
        }
    }
}

async fn http1<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The TLS client of `--cacert`: that CA alone trusted, HTTP/1.1 offered, sessions resumed
/// only with `resume`.
fn tls_connector(
    cacert: &std::path::Path,
    resume: bool,
) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(cacert)
        .map_err(|e| format!("cacert: {e}"))?
    {
        roots
            .add(cert.map_err(|e| format!("cacert: {e}"))?)
            .map_err(|e| format!("cacert: {e}"))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// When the open loop sends its next request. A thread of its own sleeps until each
/// scheduled instant (the OS timer is precise to tens of microseconds, the runtime's to a
/// millisecond, which would send the requests in bursts) and hands the instant to whichever
/// connection is free.
struct Schedule {
    due: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Instant>>,
}

impl Schedule {
    fn start(rate: f64, start: std::time::Instant, deadline: std::time::Instant) -> Self {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for ticket in 0u64.. {
                let at = start + Duration::from_secs_f64(ticket as f64 / rate);
                if at >= deadline {
                    break;
                }
                let now = std::time::Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                if tx.send(Instant::from_std(at)).is_err() {
                    break;
                }
            }
        });
        Self {
            due: tokio::sync::Mutex::new(rx),
        }
    }

    /// The next scheduled instant; `None` once the schedule is over.
    async fn take(&self) -> Option<Instant> {
        self.due.lock().await.recv().await
    }
}

/// Sends requests on one connection until the deadline; reconnects after an error.
async fn drive(target: Arc<Target>, schedule: Option<Arc<Schedule>>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut dates = DateCache::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let due = match &schedule {
            Some(s) => match s.take().await {
                Some(at) => Some(at),
                None => break,
            },
            None if Instant::now() >= deadline => break,
            None => None,
        };
        let conn = match sender.as_mut() {
            Some(s) => s,
            None => match connect(&target).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = match target.request(&mut dates) {
            Ok(r) => r,
            Err(_) => {
                tally.errors += 1;
                break;
            }
        };
        if conn.ready().await.is_err() {
            sender = None;
            tally.errors += 1;
            continue;
        }
        let sent = Instant::now();
        if let Some(at) = due {
            tally
                .late_us
                .push(sent.saturating_duration_since(at).as_micros() as u32);
        }
        match conn.send_request(request).await {
            Ok(response) => {
                let status = response.status();
                let drained = response.into_body().collect().await.is_ok();
                tally
                    .latencies_us
                    .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !drained || target.new_connection {
                    sender = None;
                }
                if !drained {
                    tally.errors += 1;
                } else if status.is_success() {
                    tally.ok += 1;
                } else {
                    tally.non_2xx += 1;
                }
            }
            Err(_) => {
                tally.errors += 1;
                sender = None;
            }
        }
    }
    tally
}

/// Sends `n` requests one after another on one connection; records the time to the first
/// body frame of each.
async fn first_events(target: Arc<Target>, n: usize) -> Tally {
    let mut tally = Tally::default();
    let mut dates = DateCache::default();
    let mut sender = match connect(&target).await {
        Ok(s) => s,
        Err(_) => {
            tally.errors += 1;
            return tally;
        }
    };
    for _ in 0..n {
        let Ok(request) = target.request(&mut dates) else {
            tally.errors += 1;
            break;
        };
        if sender.ready().await.is_err() {
            tally.errors += 1;
            break;
        }
        let sent = Instant::now();
        let Ok(response) = sender.send_request(request).await else {
            tally.errors += 1;
            break;
        };
        let status = response.status();
        let mut body = response.into_body();
        let first = body.frame().await;
        tally
            .latencies_us
            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !matches!(first, Some(Ok(_))) || !status.is_success() {
            tally.non_2xx += 1;
        } else {
            tally.ok += 1;
        }
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                tally.errors += 1;
                break;
            }
        }
    }
    tally
}

/// One stream: a request on a connection of its own (plain HTTP), its first event timed
/// from the moment it was written, then the gap before each later event, until the answer
/// ends; each both as the client read it and as the kernel received it (see [`sse`]).
async fn one_stream(addr: SocketAddr, request: Vec<u8>, start: Instant) -> Tally {
    let mut tally = Tally::default();
    let timed = match sse::stream(addr, &request, start).await {
        Ok(timed) => timed,
        Err(e) => {
            tally.errors += 1;
            tally.first_error.get_or_insert(e);
            return tally;
        }
    };
    tally.sent_at_us.push(timed.sent_at_us);
    if !(200..300).contains(&timed.status) {
        tally.non_2xx += 1;
        return tally;
    }
    if !timed.complete {
        tally.errors += 1;
        return tally;
    }
    tally.latencies_us.extend(timed.first_read_us);
    tally.kernel_latencies_us.extend(timed.first_kernel_us);
    tally.gaps_us.extend(timed.gaps_read_us);
    tally.kernel_gaps_us.extend(timed.gaps_kernel_us);
    tally.ok += 1;
    tally
}

/// `request` as HTTP/1.1 bytes, with `body`.
fn request_bytes(request: &Request<Full<Bytes>>, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", request.method(), request.uri()).into_bytes();
    for (name, value) in request.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// An event stream for every request: `events` events, `every` apart, the first at once.
struct Events {
    left: usize,
    n: usize,
    tick: tokio::time::Interval,
}

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.tick.poll_tick(cx));
        self.left -= 1;
        self.n += 1;
        let event = format!("id: {}\ndata: {{\"token\":\"hello\"}}\n\n", self.n);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(event)))))
    }
}

/// Serves [`Events`] on a loopback port until killed. Its listen queue holds 4096 waiting
/// connections, as the bench's nginx upstream and proxies do (tokio's default is 1024): a
/// burst of streams through a proxy must not lose SYNs to the model server's queue, which
/// costs a stream a second (the SYN's retransmission) whichever proxy it went through.
async fn serve_sse(events: usize, every: Duration) -> Result<(), String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| format!("bind: {e}"))?;
    let listener = socket.listen(4096).map_err(|e| format!("listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("{}", serde_json::json!({"addr": addr.to_string()}));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let body = Events {
                    left: events,
                    n: 0,
                    tick,
                };
                http::Response::builder()
                    .header(http::header::CONTENT_TYPE, "text/event-stream")
                    .header("x-accel-buffering", "no")
                    .body(body)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

async fn resolve(uri: &Uri) -> Result<SocketAddr, String> {
    let authority = uri.authority().ok_or("the URL has no host")?;
    let port = authority
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    tokio::net::lookup_host((authority.host(), port))
        .await
        .map_err(|e| format!("resolving {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))
}

async fn target(args: &Args) -> Result<Target, String> {
    let uri: Uri = args
        .url
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("url: not a URL: {e}"))?;
    let tls = match (uri.scheme_str(), &args.cacert) {
        (Some("http"), _) => None,
        (Some("https"), Some(cacert)) => {
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("url: {host:?} is not a TLS server name: {e}"))?;
            Some((tls_connector(cacert, args.tls_resume)?, name))
        }
        (Some("https"), None) => return Err("cacert: an https URL needs the CA's file".into()),
        _ => return Err("url: only http:// and https:// targets are supported".into()),
    };
    let addr = resolve(&uri).await?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| format!("method: {:?} is not an HTTP method", args.method))?;
    let path_and_query: Uri = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|e| format!("url: {e}"))?;
    let body = if args.body_bytes == 0 {
        Bytes::new()
    } else {
        // A JSON string of the requested size: `"aaaa…"`.
        let mut text = String::with_capacity(args.body_bytes);
        text.push('"');
        while text.len() + 1 < args.body_bytes {
            text.push('a');
        }
        text.push('"');
        Bytes::from(text)
    };
    let mut extra = Vec::new();
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("header: {h:?} is not `name: value`"))?;
        let name = HeaderName::from_bytes(n.trim().as_bytes())
            .map_err(|_| format!("header: {n:?} is not a header name"))?;
        let value = HeaderValue::from_str(v.trim())
            .map_err(|_| format!("header: the value of {n:?} is not a header value"))?;
        extra.push((name, value));
    }
    let key = match (&args.app_key, &args.app_secret) {
        (Some(k), Some(s)) => Some((k.clone(), s.as_bytes().to_vec())),
        (None, None) => None,
        _ => return Err("app-key and app-secret go together".into()),
    };
    let mut target = Target {
        addr,
        tls,
        new_connection: args.new_connection,
        method,
        host,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        path_and_query,
        body,
        extra,
        key,
        once: None,
    };
    if args.sign == SignMode::Once {
        let date = DateCache::default().now().to_owned();
        target.once = target.signature(&date).map(|auth| (date, auth));
    }
    Ok(target)
}

async fn run(args: Args) -> Result<serde_json::Value, String> {
    if args.connections == 0 {
        return Err("connections: must be at least 1".into());
    }
    if args.duration.is_nan() || args.duration <= 0.0 {
        return Err("duration: must be more than 0 seconds".into());
    }
    let target = Arc::new(target(&args).await?);
    let started = Instant::now();
    let mut tally = Tally::default();
    if let Some(n) = args.first_event {
        tally = first_events(target, n).await;
    } else if args.streams {
        if target.tls.is_some() {
            return Err("--streams: plain http:// only".into());
        }
        let _stamps = sse::stamps_on()?;
        // Every request made before the first connection opens: the burst is connections
        // and writes alone.
        let mut dates = DateCache::default();
        let requests = (0..args.connections)
            .map(|_| {
                target
                    .request(&mut dates)
                    .map(|request| request_bytes(&request, &target.body))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The stamps on, as the kernel's deferred work turns them on.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(at) = args.start_at_ms {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(at);
            if let Ok(wait) = at.duration_since(std::time::SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let started = Instant::now();
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|request| tokio::spawn(one_stream(target.addr, request, started)))
            .collect();
        for task in tasks {
            if let Ok(t) = task.await {
                tally.merge(t);
            }
        }
    } else {
        let deadline = started + Duration::from_secs_f64(args.duration);
        let schedule = match args.rate {
            Some(rate) if rate > 0.0 => Some(Arc::new(Schedule::start(
                rate,
                started.into_std() + Duration::from_millis(20),
                deadline.into_std(),
            ))),
            Some(_) => return Err("rate: must be more than 0 per second".into()),
            None => None,
        };
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(drive(target.clone(), schedule.clone(), deadline)))
            .collect();
        for task in tasks {
            if let Ok(t) = task.await {
                tally.merge(t);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    tally.latencies_us.sort_unstable();
    tally.late_us.sort_unstable();
    tally.gaps_us.sort_unstable();
    tally.sent_at_us.sort_unstable();
    tally.kernel_latencies_us.sort_unstable();
    tally.kernel_gaps_us.sort_unstable();
    let done = tally.ok + tally.non_2xx;
    Ok(serde_json::json!({
        "requests": done,
        "ok": tally.ok,
        "non_2xx": tally.non_2xx,
        "errors": tally.errors,
        "seconds": seconds,
        "rps": done as f64 / seconds,
        "p50_us": percentile(&tally.latencies_us, 50.0),
        "p90_us": percentile(&tally.latencies_us, 90.0),
        "p99_us": percentile(&tally.latencies_us, 99.0),
        "max_us": tally.latencies_us.last(),
        "late_p99_us": percentile(&tally.late_us, 99.0),
        "gap_p50_us": percentile(&tally.gaps_us, 50.0),
        "gap_p99_us": percentile(&tally.gaps_us, 99.0),
        "sent_at_p50_us": percentile(&tally.sent_at_us, 50.0),
        "sent_at_p99_us": percentile(&tally.sent_at_us, 99.0),
        "stamped": tally.kernel_latencies_us.len(),
        "kernel_p50_us": percentile(&tally.kernel_latencies_us, 50.0),
        "kernel_p99_us": percentile(&tally.kernel_latencies_us, 99.0),
        "kernel_gap_p50_us": percentile(&tally.kernel_gaps_us, 50.0),
        "kernel_gap_p99_us": percentile(&tally.kernel_gaps_us, 99.0),
        "first_error": tally.first_error,
    }))
}

/// Microseconds one SHA-256 of `bytes` bytes takes, the median of 15 runs of at least
/// 50 ms each.
fn time_sha256(bytes: usize) -> f64 {
    let body = vec![b'x'; bytes.max(1)];
    let mut runs = Vec::new();
    for _ in 0..15 {
        let start = std::time::Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(infergate_sign::sha256_hex(std::hint::black_box(&body)));
            n += 1;
        }
        runs.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.serve_sse {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let served = runtime.map_err(|e| e.to_string()).and_then(|rt| {
            rt.block_on(serve_sse(args.events, Duration::from_millis(args.every_ms)))
        });
        if let Err(e) = served {
            eprintln!("infergate-load: {e}");
        }
        return ExitCode::FAILURE;
    }
    if args.time_sha256 {
        let us = time_sha256(args.body_bytes);
        println!(
            "{}",
            serde_json::json!({"bytes": args.body_bytes, "sha256_us": us})
        );
        return ExitCode::SUCCESS;
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("infergate-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("infergate-load: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(body: &str, sign: SignMode) -> Target {
        let mut t = Target {
            addr: "127.0.0.1:9".parse().expect("addr"),
            tls: None,
            new_connection: false,
            method: Method::POST,
            host: "127.0.0.1:9".into(),
            path: "/v1/infers/x/predict".into(),
            query: "b=2&a=1".into(),
            path_and_query: "/v1/infers/x/predict?b=2&a=1".parse().expect("uri"),
            body: Bytes::from(body.to_owned()),
            extra: Vec::new(),
            key: Some(("key".into(), b"secret".to_vec())),
            once: None,
        };
        if sign == SignMode::Once {
            let date = DateCache::default().now().to_owned();
            t.once = t.signature(&date).map(|auth| (date, auth));
        }
        t
    }

    /// What the load generator sends is what the gateway's verifier accepts, with the
    /// secret it was signed with and no other.
    #[test]
    fn requests_carry_valid_signatures() {
        for mode in [SignMode::Fresh, SignMode::Once] {
            let t = target("{\"inputs\":1}", mode);
            let request = t.request(&mut DateCache::default()).expect("request");
            let headers = request.headers();
            let auth = headers["authorization"].to_str().expect("ascii");
            let body_hash = infergate_sign::sha256_hex(&t.body);
            let prepared = infergate_sign::PreparedVerification::prepare(
                auth,
                infergate_sign::ReceivedRequest {
                    method: "POST",
                    raw_path: &t.path,
                    raw_query: &t.query,
                    headers,
                    body_sha256: Some(&body_hash),
                    body_is_empty: false,
                },
            )
            .expect("prepare");
            assert_eq!(prepared.verify(b"secret"), infergate_sign::Verdict::Valid);
            assert_ne!(prepared.verify(b"other"), infergate_sign::Verdict::Valid);
        }
    }

    #[test]
    fn percentiles_are_ranks() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), Some(50));
        assert_eq!(percentile(&sorted, 99.0), Some(99));
        assert_eq!(percentile(&sorted, 100.0), Some(100));
        assert_eq!(percentile(&[7], 1.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
