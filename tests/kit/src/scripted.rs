//! A scripted HTTP server on 127.0.0.1 for any provider's wire format: each request is
//! recorded (method, path and query, headers, JSON body) and answered with the next scripted
//! [`Response`] — a JSON reply with any status and headers, or a stream of chunks written one
//! by one (SSE or newline-delimited JSON), as the provider's real server would.
//!
//! Unlike [`crate::FakeLlm`], which speaks OpenAI's dialect and picks replies by model, this
//! server knows no dialect: the test writes the provider's bytes and asserts the request the
//! client sent, field by field.

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Response {
    /// A complete reply: status, extra headers, JSON body.
    Json(u16, Vec<(String, String)>, Value),
    /// A complete reply whose body is not JSON (an HTML error page, garbage).
    Text(u16, Vec<(String, String)>, String),
    /// A 200 streamed with `Transfer-Encoding: chunked`, one chunk per element, with the
    /// given content type (`text/event-stream`, `application/x-ndjson`).
    Stream(String, Vec<String>),
}

impl Response {
    /// A 200 JSON reply.
    pub fn ok(body: Value) -> Response {
        Response::Json(200, Vec::new(), body)
    }

    /// A JSON reply with `status`.
    pub fn status(status: u16, body: Value) -> Response {
        Response::Json(status, Vec::new(), body)
    }

    /// The same reply with one more header (ignored for streams).
    pub fn header(mut self, name: &str, value: &str) -> Response {
        if let Response::Json(_, h, _) | Response::Text(_, h, _) = &mut self {
            h.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// An SSE stream of `data:` events, each JSON value one event, written chunk by chunk.
    pub fn sse(events: impl IntoIterator<Item = Value>) -> Response {
        Response::Stream(
            "text/event-stream".into(),
            events
                .into_iter()
                .map(|e| format!("data: {e}\n\n"))
                .collect(),
        )
    }

    /// An SSE stream of named events (`event: <name>` then `data:`), as Anthropic sends.
    pub fn sse_named(events: impl IntoIterator<Item = Value>) -> Response {
        Response::Stream(
            "text/event-stream".into(),
            events
                .into_iter()
                .map(|e| {
                    let name = e.get("type").and_then(Value::as_str).unwrap_or("message");
                    format!("event: {name}\ndata: {e}\n\n")
                })
                .collect(),
        )
    }
}

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// `POST`, …
    pub method: String,
    /// The path with its query (`/v1/messages`, `/v1beta/models/m:generateContent`).
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// When the first byte of a streamed reply went out on the socket.
    pub first_byte_at: Option<Instant>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    script: VecDeque<Response>,
    /// Answers every request once the script is used up (benchmarks).
    always: Option<Response>,
    log: Vec<Request>,
    /// Whether requests are kept in `log` (a benchmark's thousands of requests are not).
    keep_log: bool,
}

/// A running server; it stops accepting when dropped.
pub struct ScriptedServer {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl ScriptedServer {
    /// Starts a server on a free port that answers requests with `script`, in order (a
    /// request beyond the script gets a 500 saying so).
    pub fn start(script: impl IntoIterator<Item = Response>) -> io::Result<ScriptedServer> {
        Self::launch(script.into_iter().collect(), None, true)
    }

    /// Starts a server that answers every request with `response` and keeps no log beyond
    /// the last request (for benchmarks).
    pub fn always(response: Response) -> io::Result<ScriptedServer> {
        Self::launch(VecDeque::new(), Some(response), false)
    }

    fn launch(
        script: VecDeque<Response>,
        always: Option<Response>,
        keep_log: bool,
    ) -> io::Result<ScriptedServer> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State {
            script,
            always,
            log: Vec::new(),
            keep_log,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = st.clone();
                        thread::spawn(move || {
                            let _ = serve_connection(stream, &st);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(ScriptedServer { port, state, stop })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves requests on one connection until the client closes it (connections are kept
/// alive, as real servers keep them).
fn serve_connection(stream: TcpStream, state: &Mutex<State>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    // As real servers do: otherwise a reply written in pieces waits for delayed ACKs.
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while serve_one(&mut reader, &mut out, state)? {}
    Ok(())
}

/// Reads one request and writes its answer; `false` when the client has gone.
fn serve_one(
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    state: &Mutex<State>,
) -> io::Result<bool> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(false);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let (response, index) = {
        let mut s = state.lock().unwrap();
        if !s.keep_log {
            s.log.clear();
        }
        s.log.push(Request {
            method,
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            first_byte_at: None,
        });
        let next = s.script.pop_front().or_else(|| s.always.clone());
        (next, s.log.len() - 1)
    };
    let plain =
        |out: &mut TcpStream, status: u16, headers: &[(String, String)], ct: &str, b: &str| {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n",
                b.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            out.write_all(head.as_bytes())?;
            out.write_all(b.as_bytes())?;
            out.flush()
        };
    match response {
        None => plain(
            out,
            500,
            &[],
            "application/json",
            r#"{"error": {"message": "the scripted server has no reply left"}}"#,
        )?,
        Some(Response::Json(status, h, body)) => {
            plain(out, status, &h, "application/json", &body.to_string())?
        }
        Some(Response::Text(status, h, body)) => plain(out, status, &h, "text/html", &body)?,
        Some(Response::Stream(ct, chunks)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            out.write_all(head.as_bytes())?;
            out.flush()?;
            for (i, c) in chunks.iter().enumerate() {
                if i == 0 {
                    let mut s = state.lock().unwrap();
                    if let Some(r) = s.log.get_mut(index) {
                        r.first_byte_at = Some(Instant::now());
                    }
                }
                out.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes())?;
                out.flush()?;
            }
            out.write_all(b"0\r\n\r\n")?;
            out.flush()?;
        }
    }
    Ok(true)
}
