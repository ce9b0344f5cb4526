use super::*;

/// Events of `stream` fed in the given chunks, and the bytes sent on.
fn run(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut s = Splitter::new(max);
    let mut events = Vec::new();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let end = i + 1 == chunks.len();
        out.extend(s.push(c, end, &mut |input| {
            match input {
                Input::Event(e) => events.push(e.to_vec()),
                Input::TooLong => events.push(b"<too long>".to_vec()),
            }
            None
        }));
    }
    (events, out)
}

const STREAM: &[u8] = b"\xEF\xBB\xBFid: 0\nretry: 3000\ndata: \n\n\
: keep-alive\r\n\r\n\
event: message\rdata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\r\
data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"tools\":[{\"name\":\"caf\xC3\xA9\"}]}}\r\n\r\n\
\n\
data: tail without a blank line";

fn whole() -> Vec<Vec<u8>> {
    run(&[STREAM], 1 << 20).0
}

#[test]
fn events_keep_their_bytes_and_terminators() {
    let (events, out) = run(&[STREAM], 1 << 20);
    assert_eq!(
        out, STREAM,
        "nothing replaced: the stream passes byte for byte"
    );
    let texts: Vec<String> = events
        .iter()
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    assert_eq!(
        texts,
        [
            "id: 0\nretry: 3000\ndata: \n\n",
            ": keep-alive\r\n\r\n",
            "event: message\rdata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\r",
            "data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{\"tools\":[{\"name\":\"café\"}]}}\r\n\r\n",
            "\n",
            "data: tail without a blank line",
        ]
    );
}

#[test]
fn any_cut_gives_the_same_events() {
    let want = whole();
    for a in 0..=STREAM.len() {
        let (events, out) = run(&[&STREAM[..a], &STREAM[a..]], 1 << 20);
        assert_eq!(events, want, "cut at {a}");
        assert_eq!(out, STREAM, "cut at {a}");
    }
    for a in (0..=STREAM.len()).step_by(7) {
        for b in a..=STREAM.len() {
            let (events, out) = run(&[&STREAM[..a], &STREAM[a..b], &STREAM[b..]], 1 << 20);
            assert_eq!(events, want, "cuts at {a}, {b}");
            assert_eq!(out, STREAM);
        }
    }
    let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(run(&bytes, 1 << 20).0, want, "one byte at a time");
}

#[test]
fn a_cr_at_the_end_of_a_chunk_waits_for_the_next_byte() {
    let mut s = Splitter::new(100);
    let mut seen = Vec::new();
    let mut keep = |i: Input<'_>| {
        if let Input::Event(e) = i {
            seen.push(e.to_vec());
        }
        None
    };
    assert!(s.push(b"data: a\r\r", false, &mut keep).is_empty());
    assert_eq!(s.held(), 9);
    assert_eq!(s.push(b"\n", false, &mut keep), b"data: a\r\r\n");
    assert_eq!(seen, [b"data: a\r\r\n".to_vec()]);
}

#[test]
fn the_data_of_an_event() {
    assert_eq!(data(b"data: a\ndata:b\ndata\n\n").unwrap(), b"a\nb\n");
    assert_eq!(data(b"data:  two spaces\n\n").unwrap(), b" two spaces");
    assert_eq!(data(b": comment\nid: 1\n\n"), None);
    assert_eq!(data(b"id: 1\ndata: x\r\n\r\n").unwrap(), b"x");
    assert_eq!(data(b"datum: x\n\n"), None);
    assert_eq!(data(b"Data: x\n\n"), None, "field names are case-sensitive");
}

#[test]
fn replacing_the_data_keeps_the_other_lines() {
    let e = b"id: 7\r\nevent: message\r\ndata: {\r\ndata: }\r\nretry: 5\r\n\r\n";
    assert_eq!(
        String::from_utf8(with_data(e, "{\"a\":1}\n")).unwrap(),
        "id: 7\r\nevent: message\r\ndata: {\"a\":1}\r\ndata: \r\nretry: 5\r\n\r\n"
    );
    assert_eq!(event("x"), b"data: x\n\n");
    assert_eq!(data(&with_data(e, "p\nq")).unwrap(), b"p\nq");
}

#[test]
fn a_too_long_event_is_reported_and_dropped_to_its_blank_line() {
    let stream: &[u8] =
        b"data: short\n\ndata: 0123456789012345678901234567890123456789\n\ndata: next\n\n";
    for cut in 0..=stream.len() {
        let mut s = Splitter::new(20);
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (c, end) in [(&stream[..cut], false), (&stream[cut..], true)] {
            out.extend(s.push(c, end, &mut |i| {
                seen.push(match i {
                    Input::Event(e) => String::from_utf8_lossy(e).into_owned(),
                    Input::TooLong => "<too long>".into(),
                });
                Some(b"X".to_vec())
            }));
        }
        assert_eq!(
            seen,
            ["data: short\n\n", "<too long>", "data: next\n\n"],
            "cut {cut}"
        );
        assert_eq!(out, b"XXX", "cut {cut}");
    }
}

#[test]
fn a_too_long_event_let_through_goes_on_byte_for_byte() {
    let stream: &[u8] =
        b"data: short\n\ndata: 0123456789012345678901234567890123456789\r\n\r\ndata: next\n\n";
    for cut in 0..=stream.len() {
        let mut s = Splitter::new(20);
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (c, end) in [(&stream[..cut], false), (&stream[cut..], true)] {
            out.extend(s.push(c, end, &mut |i| {
                seen.push(matches!(i, Input::TooLong));
                None
            }));
        }
        assert_eq!(out, stream, "cut {cut}");
        assert_eq!(seen, [false, true, false], "cut {cut}");
    }
}

#[test]
fn too_long_events_end_where_readers_end_them_with_any_line_ends() {
    for nl in ["\n", "\r", "\r\n"] {
        let stream = format!(
            "data: short{nl}{nl}data: 0123456789{nl}data: 0123456789012345678901234567890123456789{nl}{nl}data: next{nl}{nl}"
        );
        let stream = stream.as_bytes();
        for keep in [true, false] {
            for cut in 0..=stream.len() {
                let mut s = Splitter::new(20);
                let mut seen = Vec::new();
                let mut out = Vec::new();
                for (c, end) in [(&stream[..cut], false), (&stream[cut..], true)] {
                    out.extend(s.push(c, end, &mut |i| {
                        seen.push(match i {
                            Input::Event(e) => String::from_utf8_lossy(e).into_owned(),
                            Input::TooLong => "<too long>".into(),
                        });
                        (!keep && matches!(i, Input::TooLong)).then(|| b"X".to_vec())
                    }));
                }
                let next = format!("data: next{nl}{nl}");
                let short = format!("data: short{nl}{nl}");
                assert_eq!(
                    seen,
                    [short.as_str(), "<too long>", next.as_str()],
                    "{nl:?} cut {cut}"
                );
                if keep {
                    assert_eq!(out, stream, "{nl:?} cut {cut}");
                } else {
                    assert_eq!(
                        out,
                        format!("{short}X{next}").as_bytes(),
                        "{nl:?} cut {cut}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_rewritten_event_never_runs_into_the_next() {
    // `x\r` then a data line then the blank `\n`: dropping the data line
    // must not leave `x\r\n`, which reads as one line end.
    let e = b"data: a\rx: 1\rdata: b\n\n";
    let out = with_data(e, "new");
    let mut s = Splitter::new(100);
    let mut n = 0;
    s.push(
        &[out.as_slice(), b"data: next\n\n"].concat(),
        true,
        &mut |_| {
            n += 1;
            None
        },
    );
    assert_eq!(n, 2, "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(data(&out).unwrap(), b"new");
}
