//! Reads web.config into a small element tree that remembers positions.
//!
//! Owns XML syntax only: well-formedness, decoding (UTF-8 with or without a
//! BOM, UTF-16 with a BOM), entity unescaping, duplicate attributes and the
//! byte offset of every element and attribute. It must not interpret any
//! element or value; `settings.rs` does that.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deeper nesting than this is refused: no real web.config comes close, and
/// a bound keeps hostile input from exhausting the stack when the tree drops.
const MAX_DEPTH: usize = 64;

/// One attribute as written, with the byte offset of its name.
#[derive(Debug, Clone)]
pub struct Attr {
    pub name: String,
    pub value: String,
    pub offset: usize,
}

/// One element with its attributes and child elements (text is dropped:
/// nothing in the schema hpgate reads carries text content).
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub offset: usize,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// A syntax problem at a byte offset of the decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// Turns raw file bytes into text, honouring a byte-order mark.
pub fn decode(bytes: &[u8]) -> Result<String, SyntaxError> {
    let utf16 = |be: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| {
                let pair = [c[0], *c.get(1).unwrap_or(&0)];
                if be {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| SyntaxError {
            offset: 0,
            message: "the file starts with a UTF-16 byte-order mark but is not valid UTF-16".into(),
        })
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest),
        [0xFF, 0xFE, ..] => utf16(false),
        [0xFE, 0xFF, ..] => utf16(true),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, SyntaxError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| SyntaxError {
        offset: e.utf8_error().valid_up_to(),
        message: "the file is not valid UTF-8 (save it as UTF-8 or UTF-16 with a byte-order mark)"
            .into(),
    })
}

/// Parses the whole document and returns its root element.
pub fn parse(text: &str) -> Result<Element, SyntaxError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let base = text.as_ptr() as usize;
    let offset_of = |s: &[u8]| -> usize {
        let p = s.as_ptr() as usize;
        p.checked_sub(base)
            .filter(|o| *o <= text.len())
            .unwrap_or(0)
    };

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| SyntaxError {
            offset: reader.error_position() as usize,
            message: format!("malformed XML: {e}"),
        })?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                return Err(SyntaxError {
                    offset: offset_of(&start).saturating_sub(1),
                    message: "a second top-level element; web.config has one root, <configuration>"
                        .into(),
                });
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        offset: offset_of(&start).saturating_sub(1),
                        message: format!("elements nested more than {MAX_DEPTH} deep"),
                    });
                }
                stack.push(element(
                    &start,
                    offset_of(&start).saturating_sub(1),
                    &offset_of,
                )?);
            }
            Event::Empty(start) => {
                let el = element(&start, offset_of(&start).saturating_sub(1), &offset_of)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                // quick-xml has already checked the end tag matches.
                if let Some(done) = stack.pop() {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => root = Some(done),
                    }
                }
            }
            Event::Eof => break,
            Event::Text(t) if stack.is_empty() => {
                return Err(SyntaxError {
                    offset: offset_of(&t),
                    message: "text outside the root element".into(),
                });
            }
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(SyntaxError {
            offset: open.offset,
            message: format!("<{}> is never closed", open.name),
        });
    }
    root.ok_or(SyntaxError {
        offset: 0,
        message: "the file has no XML element (expected <configuration>)".into(),
    })
}

fn element(
    start: &BytesStart<'_>,
    offset: usize,
    offset_of: &dyn Fn(&[u8]) -> usize,
) -> Result<Element, SyntaxError> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let mut attrs: Vec<Attr> = Vec::new();
    let mut list = start.attributes();
    list.with_checks(false);
    for attr in list {
        let attr = attr.map_err(|e| SyntaxError {
            offset,
            message: format!("malformed attribute in <{name}>: {e}"),
        })?;
        let attr_name = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let attr_offset = offset_of(attr.key.as_ref());
        if attrs.iter().any(|a| a.name == attr_name) {
            return Err(SyntaxError {
                offset: attr_offset,
                message: format!("attribute {attr_name} appears twice in <{name}>"),
            });
        }
        let value = attr
            .unescape_value()
            .map_err(|e| SyntaxError {
                offset: attr_offset,
                message: format!("bad value for attribute {attr_name}: {e}"),
            })?
            .into_owned();
        attrs.push(Attr {
            name: attr_name,
            value,
            offset: attr_offset,
        });
    }
    Ok(Element {
        name,
        offset,
        attrs,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tree_with_offsets() {
        let text = "<configuration>\n  <a x=\"1\" y='&amp;'/>\n</configuration>";
        let root = parse(text).unwrap();
        assert_eq!(root.name, "configuration");
        assert_eq!(root.offset, 0);
        let a = &root.children[0];
        assert_eq!(a.offset, text.find("<a").unwrap());
        assert_eq!(a.attr("y").unwrap().value, "&");
        assert_eq!(a.attr("y").unwrap().offset, text.find("y=").unwrap());
    }

    #[test]
    fn duplicate_attribute_points_at_second() {
        let text = "<configuration a=\"1\" a=\"2\"/>";
        let err = parse(text).unwrap_err();
        assert_eq!(err.offset, text.rfind("a=").unwrap());
        assert!(err.message.contains("twice"), "{}", err.message);
    }

    #[test]
    fn mismatched_and_unclosed_tags_are_errors() {
        assert!(parse("<configuration><a></b></configuration>").is_err());
        assert!(parse("<configuration><a>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a/><b/>").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "<a>".repeat(MAX_DEPTH + 5);
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn decodes_boms() {
        assert_eq!(decode(b"\xEF\xBB\xBF<a/>").unwrap(), "<a/>");
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<a/>".encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect();
        assert_eq!(decode(&le).unwrap(), "<a/>");
        assert!(decode(b"<a \xFF/>").is_err());
    }
}
