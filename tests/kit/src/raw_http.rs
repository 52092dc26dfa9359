//! A raw HTTP server on 127.0.0.1 whose replies a test writes byte by byte: for clients facing
//! hostile servers (garbage, endless or dripping bodies, resets, silence), which a well-behaved
//! server such as [`crate::FakeLlm`] cannot produce.
//!
//! Each connection runs the test's handler on its own thread with a [`Conn`]; the handler
//! usually reads the request with [`Conn::read_request`] and then misbehaves. Handlers end when
//! the client goes away (writes fail, reads see the end), so nothing outlives the test for long.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A running server. It stops accepting when dropped.
pub struct RawHttp {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

/// One accepted connection, handed to the handler.
pub struct Conn {
    stream: TcpStream,
    /// Which connection this is, from 0 in arrival order (to script a sequence of replies).
    pub index: usize,
}

impl RawHttp {
    /// Starts a server on a free port of 127.0.0.1 that runs `handler` for every connection.
    pub fn start<F>(handler: F) -> io::Result<RawHttp>
    where
        F: Fn(Conn) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let (sp, count) = (stop.clone(), accepted.clone());
        thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let index = count.fetch_add(1, Ordering::SeqCst);
                        let handler = handler.clone();
                        thread::spawn(move || {
                            // Bounded, so a handler waiting on a client that never closes ends.
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                            let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
                            handler(Conn { stream, index });
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(RawHttp {
            port,
            stop,
            accepted,
        })
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Conn {
    /// Reads one request (head and `Content-Length` body) and returns it as sent.
    pub fn read_request(&mut self) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = find(&data, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return Ok(data);
                }
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Ok(data);
            }
            data.extend_from_slice(&buf[..n]);
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// A complete response: `status`, `headers`, and `body` with its `Content-Length`.
    pub fn reply(&mut self, status: u16, headers: &[(&str, &str)], body: &str) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.send(head.as_bytes())?;
        self.send(body.as_bytes())
    }

    /// A 200 head with a chunked body that never ends: `chunk` repeated until the client
    /// hangs up, one chunk every `every` (zero: as fast as the client reads).
    pub fn endless(&mut self, chunk: &[u8], every: Duration) -> io::Result<()> {
        self.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(chunk);
        frame.extend_from_slice(b"\r\n");
        loop {
            self.send(&frame)?;
            if !every.is_zero() {
                thread::sleep(every);
            }
        }
    }

    /// Waits until the client sends something, then closes without reading it: with data left
    /// unread, the kernel answers with a reset (RST) rather than an orderly close.
    pub fn reset(self) {
        let mut probe = [0u8; 1];
        let _ = self.stream.peek(&mut probe);
        drop(self.stream);
    }

    /// Keeps the connection open without answering until the client hangs up.
    pub fn stall(mut self) {
        let mut buf = [0u8; 4096];
        while matches!(self.stream.read(&mut buf), Ok(n) if n > 0) {}
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_as_scripted() {
        let server = RawHttp::start(|mut c| {
            let req = c.read_request().unwrap();
            assert!(req.ends_with(b"ping"));
            c.reply(418, &[("X-Test", "1")], "pong").unwrap();
        })
        .unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(b"POST /v1/x HTTP/1.1\r\nContent-Length: 4\r\n\r\nping")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 418"), "{out}");
        assert!(out.contains("X-Test: 1") && out.ends_with("pong"), "{out}");
        assert_eq!(server.connections(), 1);
    }
}
