//! The lean path's reading of an app's answer against hyper's client's.
//! hpgate has two app clients: its own (`proxy/lean/`) for requests
//! without a body, hyper's for the rest. An answer read one way on one
//! path and another way on the other would give a client different bodies
//! depending on its request; worse, a kept connection could be read past
//! the end of an answer on one of them.

use crate::proxy::fuzz::framing_of;

/// A framing and whether the connection is kept, as `framing_of` says it.
type Reading = Result<(String, bool), String>;

/// The first byte says whether the request was HEAD; the rest is an
/// answer's head.
///
/// Invariants: no panic; for every head the lean path takes as a final
/// answer, or refuses for its framing, the same framing (empty, a
/// length, chunked, to the close), the same refusal and the same
/// keep-alive decision as hyper 1.x's client reaches by its rules
/// (`proto/h1/role.rs`, `headers.rs`), written here apart from the lean
/// path's code.
pub fn app_framing(data: &[u8]) {
    let Some((&ctl, head)) = data.split_first() else {
        return;
    };
    let head_request = ctl & 1 != 0;
    let Some(lean) = framing_of(head, head_request) else {
        return;
    };
    let hyper = as_hyper_reads_it(head, head_request);
    let what = String::from_utf8_lossy(head);
    assert_eq!(
        lean.is_ok(),
        hyper.is_ok(),
        "lean {lean:?}, hyper {hyper:?}: {what:?}"
    );
    if let (Ok(l), Ok(h)) = (&lean, &hyper) {
        assert_eq!(
            l,
            h,
            "lean against hyper: {:?}",
            String::from_utf8_lossy(head)
        );
    }
}

/// A field's name in lower case and its value.
type Field<'a> = (String, &'a [u8]);

fn as_hyper_reads_it(head: &[u8], head_request: bool) -> Reading {
    let mut raw = [httparse::EMPTY_HEADER; 100];
    let mut r = httparse::Response::new(&mut raw);
    if !matches!(r.parse(head), Ok(httparse::Status::Complete(_))) {
        panic!("the lean path took a head httparse does not: {head:?}");
    }
    let old = r.version == Some(0);
    let code = r.code.unwrap_or(0);
    let fields: Vec<Field> = r
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .collect();
    let framing = if head_request || code == 204 || code == 304 {
        "empty".to_string()
    } else {
        body_framing(&fields, old)?
    };
    let kept = framing != "close" && keeps_alive(&fields, old);
    Ok((framing, kept))
}

/// Transfer-Encoding over Content-Length; neither: to the close.
fn body_framing(fields: &[Field], old: bool) -> Result<String, String> {
    let named = |n: &'static str| fields.iter().filter(move |f| f.0 == n).map(|f| f.1);
    if let Some(last) = named("transfer-encoding").next_back() {
        if old {
            return Err("Transfer-Encoding in HTTP/1.0".into());
        }
        // The last line's last element; a line that is not visible ASCII
        // says nothing.
        let chunked = text(last).is_some_and(|s| {
            s.rsplit(',')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("chunked"))
        });
        return Ok(if chunked { "chunked" } else { "close" }.into());
    }
    let mut length: Option<u64> = None;
    for line in named("content-length") {
        let s = text(line).ok_or("a Content-Length not visible ASCII")?;
        for v in s.split(',') {
            let n = digits(v.trim()).ok_or("a Content-Length not a number")?;
            if length.is_some_and(|l| l != n) {
                return Err("two Content-Lengths".into());
            }
            length = Some(n);
        }
    }
    Ok(length.map_or("close".into(), |n| format!("length {n}")))
}

/// HTTP/1.1 keeps the connection unless a Connection line says `close`;
/// HTTP/1.0 only if one says `keep-alive` and none says `close`. Lines
/// that are not visible ASCII say nothing.
fn keeps_alive(fields: &[Field], old: bool) -> bool {
    let says = |token: &str| {
        fields.iter().filter(|f| f.0 == "connection").any(|f| {
            text(f.1).is_some_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    !says("close") && (!old || says("keep-alive"))
}

/// The value as text when it is visible ASCII and tabs (what hyper's
/// `HeaderValue::to_str` takes).
fn text(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

/// `1*DIGIT` that fits a u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
