//! Server-sent events (the `text/event-stream` format OpenAI, Anthropic and Gemini stream
//! in), read incrementally from body chunks as they arrive, and Ollama's newline-delimited
//! JSON.

/// One event: its `event:` name (empty when absent) and its `data:` lines joined by `\n`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub name: String,
    pub data: String,
}

/// Splits a byte stream into events. Chunks may cut anywhere, even inside a UTF-8 sequence.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    current: Event,
    has_data: bool,
    /// Whether the input is newline-delimited JSON (each line one event) rather than SSE.
    ndjson: bool,
}

impl Parser {
    /// A parser for newline-delimited JSON: every non-empty line is one event's data.
    pub(crate) fn ndjson() -> Self {
        Parser {
            ndjson: true,
            ..Parser::default()
        }
    }

    /// Feeds `chunk`, handing each completed event to `on_event` (which may stop the stream
    /// with an error).
    pub(crate) fn feed<E>(
        &mut self,
        chunk: &[u8],
        on_event: &mut dyn FnMut(Event) -> Result<(), E>,
    ) -> Result<(), E> {
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&line, on_event)?;
            } else {
                self.line.push(b);
            }
        }
        Ok(())
    }

    /// Ends the stream: a last event without its blank line still counts.
    pub(crate) fn finish<E>(
        &mut self,
        on_event: &mut dyn FnMut(Event) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, on_event)?;
        }
        self.line_done(b"", on_event)
    }

    fn line_done<E>(
        &mut self,
        line: &[u8],
        on_event: &mut dyn FnMut(Event) -> Result<(), E>,
    ) -> Result<(), E> {
        let line = String::from_utf8_lossy(line);
        if self.ndjson {
            if !line.trim().is_empty() {
                on_event(Event {
                    name: String::new(),
                    data: line.into_owned(),
                })?;
            }
            return Ok(());
        }
        if line.is_empty() {
            if self.has_data {
                self.has_data = false;
                on_event(std::mem::take(&mut self.current))?;
            } else {
                self.current = Event::default();
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.current.name = value.to_string(),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &mut Parser, chunks: &[&[u8]]) -> Vec<Event> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed::<()>(c, &mut |e| {
                out.push(e);
                Ok(())
            })
            .unwrap();
        }
        p.finish::<()>(&mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn events_survive_any_chunking() {
        let text = "event: message_start\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: ping\n\ndata: é\n\ndata: last";
        let want = vec![
            Event {
                name: "message_start".into(),
                data: "{\"a\":\n1}".into(),
            },
            Event {
                name: String::new(),
                data: "é".into(),
            },
            Event {
                name: String::new(),
                data: "last".into(),
            },
        ];
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            let got = all(&mut Parser::default(), &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got, want, "cut at {cut}");
        }
        let nd = all(&mut Parser::ndjson(), &[b"{\"a\":1}\n\n{\"b\"", b":2}"]);
        assert_eq!(nd.len(), 2);
        assert_eq!(nd[1].data, "{\"b\":2}");
    }
}
