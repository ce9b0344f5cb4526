//! Server-sent events (WHATWG HTML §9.2) in a byte stream that arrives in
//! chunks cut anywhere: inside a line, a UTF-8 character, a `\r\n` or the
//! blank line that ends an event.
//!
//! [`Splitter`] hands over each complete event, from its first line to the
//! end of its blank line, terminators included, so an event it does not
//! change goes out byte for byte; the rest of a chunk waits for the next one.
//! Lines end with `\r\n`, `\n` or `\r`; a `\r` at the end of a chunk waits
//! for the next byte, which may make it a `\r\n`. A byte-order mark at the
//! start of the stream passes through on its own. An event longer than the
//! limit is not held: it is reported ([`Input::TooLong`]) and its bytes are
//! dropped up to its blank line, or passed on as they come when the caller
//! lets it go on.

/// What the splitter hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A complete event, or at the end of the stream what is left of one.
    Event(&'a [u8]),
    /// An event grew past the limit; its bytes are being dropped.
    TooLong,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a splitter stands in an event over the limit.
#[derive(Debug, Clone, Copy)]
struct Passing {
    at_line_start: bool,
    /// The last byte was a `\r`.
    after_cr: bool,
    /// Its bytes go on as they are (else they are dropped).
    keep: bool,
    /// Its blank line ended with a `\r` at the end of a chunk: a `\n`
    /// first in the next one still belongs to it.
    closing: bool,
}

#[derive(Debug)]
pub struct Splitter {
    /// Bytes of the event being read.
    carry: Vec<u8>,
    /// Where scanning `carry` goes on, and where its current line starts.
    scan: usize,
    line_start: usize,
    max: usize,
    /// Past the optional byte-order mark.
    started: bool,
    /// In an event over the limit, not held: up to its blank line.
    long: Option<Passing>,
}

impl Splitter {
    /// A splitter holding at most `max` bytes of an incomplete event.
    pub fn new(max: usize) -> Splitter {
        Splitter {
            carry: Vec::new(),
            scan: 0,
            line_start: 0,
            max,
            started: false,
            long: None,
        }
    }

    /// Bytes of an incomplete event held back.
    pub fn held(&self) -> usize {
        self.carry.len()
    }

    /// Dropping the rest of an event over the limit.
    pub fn skipping(&self) -> bool {
        self.long.is_some_and(|l| !l.keep)
    }

    /// Gives up the bytes held back (the caller sends them on itself).
    pub fn take(&mut self) -> Vec<u8> {
        self.scan = 0;
        self.line_start = 0;
        core::mem::take(&mut self.carry)
    }

    /// Feeds `chunk`; `end`: the stream ends with it. `each` gets every
    /// event completed, and [`Input::TooLong`] for one over the limit, and
    /// returns its replacement, or `None` to let it go on as it is. Returns
    /// the bytes to send on now.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end: bool,
        each: &mut dyn FnMut(Input<'_>) -> Option<Vec<u8>>,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        let mut chunk = chunk;
        if self.long.is_some() {
            chunk = self.pass_long(chunk, &mut out);
        }
        self.carry.extend_from_slice(chunk);
        if !self.started {
            if self.carry.starts_with(BOM) {
                out.extend_from_slice(BOM);
                self.carry.drain(..BOM.len());
            } else if BOM.starts_with(&self.carry) && !end {
                // Too short to tell yet.
                return out;
            }
            self.started = true;
        }
        while let Some(len) = self.event_end(end) {
            let event = self.carry.get(..len).unwrap_or_default();
            // However it was cut, an event over the limit is one.
            let input = if len > self.max {
                Input::TooLong
            } else {
                Input::Event(event)
            };
            match each(input) {
                Some(r) => out.extend_from_slice(&r),
                None => out.extend_from_slice(event),
            }
            self.carry.drain(..len.min(self.carry.len()));
            self.scan = 0;
            self.line_start = 0;
        }
        if self.carry.is_empty() {
            return out;
        }
        if self.carry.len() > self.max {
            let replaced = each(Input::TooLong);
            let keep = replaced.is_none();
            match replaced {
                Some(r) => out.extend_from_slice(&r),
                None => out.extend_from_slice(&self.carry),
            }
            // Where the event stands: a line may have ended, or the event,
            // with a `\r` that a `\n` may still follow.
            let len = self.carry.len();
            let after_cr = self.carry.last() == Some(&b'\r');
            let closing = after_cr && self.line_start == len - 1;
            let at_line_start = self.line_start == len || after_cr;
            self.carry.clear();
            self.scan = 0;
            self.line_start = 0;
            self.long = Some(Passing {
                at_line_start,
                after_cr,
                keep,
                closing,
            });
        } else if end {
            match each(Input::Event(&self.carry)) {
                Some(r) => out.extend_from_slice(&r),
                None => out.extend_from_slice(&self.carry),
            }
            self.carry.clear();
        }
        out
    }

    /// Length of the first complete event in `carry`, scanning on from
    /// where the last call stopped.
    fn event_end(&mut self, end: bool) -> Option<usize> {
        let c = &self.carry;
        let mut i = self.scan;
        while let Some(&b) = c.get(i) {
            let term = match b {
                b'\n' => 1,
                b'\r' => match c.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None if end => 1,
                    None => {
                        self.scan = i;
                        return None;
                    }
                },
                _ => {
                    i += 1;
                    continue;
                }
            };
            let blank = i == self.line_start;
            i += term;
            if blank {
                return Some(i);
            }
            self.line_start = i;
        }
        self.scan = i;
        None
    }

    /// The bytes of an event over the limit, up to its blank line, go on
    /// (or are dropped when it was replaced); returns the rest of `chunk`.
    fn pass_long<'c>(&mut self, chunk: &'c [u8], out: &mut Vec<u8>) -> &'c [u8] {
        let Some(mut p) = self.long else {
            return chunk;
        };
        let mut ended = None;
        if p.closing {
            ended = Some(usize::from(chunk.first() == Some(&b'\n')));
        }
        for (i, &b) in chunk.iter().enumerate() {
            if ended.is_some() {
                break;
            }
            match b {
                b'\n' if p.after_cr => p.after_cr = false,
                b'\n' if p.at_line_start => ended = Some(i + 1),
                b'\r' if p.at_line_start => match chunk.get(i + 1) {
                    Some(b'\n') => ended = Some(i + 2),
                    Some(_) => ended = Some(i + 1),
                    None => p.closing = true,
                },
                b'\n' => p.at_line_start = true,
                b'\r' => {
                    p.at_line_start = true;
                    p.after_cr = true;
                }
                _ => {
                    p.at_line_start = false;
                    p.after_cr = false;
                }
            }
        }
        let (passed, rest) = chunk.split_at(ended.unwrap_or(chunk.len()).min(chunk.len()));
        if p.keep {
            out.extend_from_slice(passed);
        }
        self.long = if ended.is_some() { None } else { Some(p) };
        rest
    }
}

/// The lines of an event with their terminators.
fn lines(event: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = event;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let term = match (rest.get(end), rest.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(_), _) => 1,
            (None, _) => 0,
        };
        let (line, after) = rest.split_at(end);
        let (term, after) = after.split_at(term.min(after.len()));
        rest = after;
        Some((line, term))
    })
}

/// A `data` line's value, or `None` for any other line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(0) => return None, // a comment
        Some(colon) => {
            let (name, value) = line.split_at(colon);
            (name, value.get(1..).unwrap_or_default())
        }
        None => (line, &[][..]),
    };
    (name == b"data").then(|| value.strip_prefix(b" ").unwrap_or(value))
}

/// The data of an event: its `data` lines joined with `\n`; `None` when it
/// has no `data` line.
pub fn data(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (line, _) in lines(event) {
        if let Some(value) = data_value(line) {
            match &mut out {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => out = Some(value.to_vec()),
            }
        }
    }
    out
}

/// `event` with its `data` lines replaced by `data` (a `data:` line per line
/// of it, where the first one was, with its terminator); every other line
/// as it was. A lone `\r` ending a line becomes `\n`: with the lines
/// between gone, it could meet the `\n` of the blank line and read as one
/// `\r\n`, joining this event to the next.
pub fn with_data(event: &[u8], data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len());
    let mut written = false;
    for (line, term) in lines(event) {
        let term = if term == b"\r" {
            b"\n".as_slice()
        } else {
            term
        };
        if data_value(line).is_none() {
            out.extend_from_slice(line);
            out.extend_from_slice(term);
            continue;
        }
        if written {
            continue;
        }
        written = true;
        let term = if term.is_empty() {
            b"\n".as_slice()
        } else {
            term
        };
        for part in data.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(part.as_bytes());
            out.extend_from_slice(term);
        }
    }
    out
}

/// A new event carrying `data`.
pub fn event(data: &str) -> Vec<u8> {
    with_data(b"data:\n\n", data)
}

#[cfg(test)]
mod tests;
