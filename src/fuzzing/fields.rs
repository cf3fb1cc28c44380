//! The app's response fields as the lean path passes them: copied as
//! bytes from the app's head into the client's (`proxy/lean/passed.rs`,
//! `fields.rs`). Whatever the app sends, the client must get whole header
//! lines (no CR or LF inside one: no second response or header smuggled
//! in) and none of the hop-by-hop fields.

use crate::proxy::fuzz::passed_lines;

/// A field as the client reads it: its name in lower case and its value
/// without the whitespace around it.
type Field = (String, Vec<u8>);

/// The first byte says whether the Content-Length line is left out (as
/// the front does when it frames the body itself); the rest is a head.
///
/// Invariants: no panic; the lines written are whole `name: value` lines
/// ending in CRLF; they hold exactly the fields httparse reads in the
/// head less the hop-by-hop ones (Connection, the fields it names,
/// Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, `proxy-*`), in
/// order; the map made of them for hyper's server holds the same.
pub fn app_fields(data: &[u8]) {
    let Some((&ctl, head)) = data.split_first() else {
        return;
    };
    let drop_length = ctl & 1 != 0;
    let Some((n, lines, map)) = passed_lines(head, drop_length) else {
        return;
    };
    let expected = by_the_rules(&head[..n], drop_length);
    assert_eq!(written(&lines), expected, "the lines passed");
    let mut mapped: Vec<Field> = map
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut all = by_the_rules(&head[..n], false);
    // A map groups a name's values: compare per name, in order.
    mapped.sort_by(|a, b| a.0.cmp(&b.0));
    all.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(mapped, all, "the map of the lines passed");
}

/// The fields in `lines`, checked to be whole header lines.
fn written(lines: &[u8]) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut rest = lines;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n");
        let end = end.unwrap_or_else(|| panic!("a line not ending in CRLF: {rest:?}"));
        let line = &rest[..end];
        rest = &rest[end + 2..];
        assert!(
            !line.iter().any(|b| matches!(b, b'\r' | b'\n')),
            "a bare CR or LF in a line: {line:?}"
        );
        let colon = line.iter().position(|b| *b == b':');
        let colon = colon.unwrap_or_else(|| panic!("a line without a colon: {line:?}"));
        let name = &line[..colon];
        assert!(
            !name.is_empty() && name.iter().all(|b| tchar(*b)),
            "name {name:?}"
        );
        fields.push(field(name, &line[colon + 1..]));
    }
    fields
}

/// Every field httparse reads in `head`, less the hop-by-hop ones (and
/// Content-Length when `drop_length`): written apart from `fields.rs`.
fn by_the_rules(head: &[u8], drop_length: bool) -> Vec<Field> {
    let mut raw = [httparse::EMPTY_HEADER; 100];
    let mut r = httparse::Response::new(&mut raw);
    if !matches!(r.parse(head), Ok(httparse::Status::Complete(_))) {
        panic!("the lean path took a head httparse does not: {head:?}");
    }
    let all: Vec<Field> = r
        .headers
        .iter()
        .map(|h| field(h.name.as_bytes(), h.value))
        .collect();
    let named: Vec<String> = all
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| {
            v.split(|b| *b == b',')
                .map(|t| t.trim_ascii().to_ascii_lowercase())
        })
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .collect();
    let hop = |n: &str| {
        matches!(
            n,
            "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        ) || n.starts_with("proxy-")
            || named.iter().any(|t| t == n)
            || (drop_length && n == "content-length")
    };
    all.into_iter().filter(|(n, _)| !hop(n)).collect()
}

fn field(name: &[u8], value: &[u8]) -> Field {
    (
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.trim_ascii().to_vec(),
    )
}

/// RFC 9110 section 5.6.2.
fn tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
