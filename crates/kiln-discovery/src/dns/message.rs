//! DNS messages (RFC 1035) as far as discovery needs them: a query for one name and
//! type, and the answer records of a response (A, AAAA, SRV, MX, NS; others skipped).
//!
//! The parser takes bytes from the network, so every length and pointer is checked:
//! compression pointers may only point backwards (which rules out loops), names stay
//! within 255 bytes, and a record's data must fit its declared length.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

pub const RCODE_SUCCESS: u8 = 0;
pub const RCODE_NAME_ERROR: u8 = 3;

/// An answer record. Names are absolute, with the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv { target: String, port: u16 },
    Mx { exchange: String },
    Ns { host: String },
}

/// The parts of a response discovery looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub truncated: bool,
    pub rcode: u8,
    /// Answer records of the supported types, in order.
    pub answers: Vec<Record>,
}

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DNS message at byte {offset}: {reason}")]
pub struct MessageError {
    pub offset: usize,
    pub reason: &'static str,
}

/// Encodes a recursive query for `name` (absolute, with or without the final dot).
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(name.len() + 18);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // 1 question
    encode_name(&mut out, name)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// Appends `name` in wire format (no compression).
pub fn encode_name(out: &mut Vec<u8>, name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.len() > 253 {
        return Err(format!("DNS name {name:?} is longer than 253 bytes"));
    }
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("DNS name {name:?} has an empty or too long label"));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Ok(())
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> MessageError {
        MessageError {
            offset: self.pos,
            reason,
        }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("message ends early"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, MessageError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a possibly compressed name, leaving the reader after it.
    fn name(&mut self) -> Result<String, MessageError> {
        let mut name = String::new();
        let mut wire_len = 0usize;
        let mut at = self.pos;
        // Where the reader continues: after the first pointer, or after the name.
        let mut resume: Option<usize> = None;
        loop {
            let len = *self.buf.get(at).ok_or(MessageError {
                offset: at,
                reason: "name runs past the message",
            })? as usize;
            match len & 0xC0 {
                0x00 if len == 0 => {
                    at += 1;
                    break;
                }
                0x00 => {
                    let label = self.buf.get(at + 1..at + 1 + len).ok_or(MessageError {
                        offset: at,
                        reason: "label runs past the message",
                    })?;
                    wire_len += len + 1;
                    if wire_len > 255 {
                        return Err(MessageError {
                            offset: at,
                            reason: "name longer than 255 bytes",
                        });
                    }
                    push_label(&mut name, label);
                    at += 1 + len;
                }
                0xC0 => {
                    let second = *self.buf.get(at + 1).ok_or(MessageError {
                        offset: at,
                        reason: "pointer runs past the message",
                    })? as usize;
                    let target = ((len & 0x3F) << 8) | second;
                    if target >= at {
                        return Err(MessageError {
                            offset: at,
                            reason: "compression pointer does not point backwards",
                        });
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => {
                    return Err(MessageError {
                        offset: at,
                        reason: "unknown label type",
                    });
                }
            }
        }
        self.pos = resume.unwrap_or(at);
        if name.is_empty() {
            name.push('.');
        }
        Ok(name)
    }
}

/// Appends a label and its dot, escaping dots, backslashes and unprintable bytes as
/// `\DDD` the way DNS presentation format (and Go's miekg/dns) does.
fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(b as char);
            }
            0x21..=0x7E => name.push(b as char),
            _ => name.push_str(&format!("\\{b:03}")),
        }
    }
    name.push('.');
}

/// Parses a response.
pub fn parse_response(buf: &[u8]) -> Result<Response, MessageError> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return Err(r.err("not a response"));
    }
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    r.bytes(4)?; // authority and additional counts: not read.
    for _ in 0..qdcount {
        r.name()?;
        r.bytes(4)?;
    }
    let mut answers = Vec::new();
    for _ in 0..ancount {
        r.name()?;
        let rtype = r.u16()?;
        let _class = r.u16()?;
        r.bytes(4)?; // TTL
        let rdlen = r.u16()? as usize;
        let start = r.pos;
        let end = start + rdlen;
        if end > buf.len() {
            return Err(r.err("record data runs past the message"));
        }
        let record = match rtype {
            TYPE_A if rdlen == 4 => {
                let b = r.bytes(4)?;
                Some(Record::A(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            TYPE_AAAA if rdlen == 16 => {
                let b: [u8; 16] = r.bytes(16)?.try_into().map_err(|_| r.err("bad AAAA"))?;
                Some(Record::Aaaa(Ipv6Addr::from(b)))
            }
            TYPE_SRV if rdlen >= 7 => {
                r.bytes(4)?; // priority, weight
                let port = r.u16()?;
                let target = r.name()?;
                Some(Record::Srv { target, port })
            }
            TYPE_MX if rdlen >= 3 => {
                r.bytes(2)?;
                Some(Record::Mx {
                    exchange: r.name()?,
                })
            }
            TYPE_NS if rdlen >= 1 => Some(Record::Ns { host: r.name()? }),
            TYPE_A | TYPE_AAAA | TYPE_SRV | TYPE_MX | TYPE_NS => {
                return Err(r.err("record data of the wrong length"));
            }
            _ => None,
        };
        if r.pos > end {
            return Err(r.err("record data longer than its declared length"));
        }
        r.pos = end;
        answers.extend(record);
    }
    Ok(Response {
        id,
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0x000F) as u8,
        answers,
    })
}

/// Encodes a response to `query` (the bytes a client sent) with `answers`, all owned by
/// the question's name. For tests' fake DNS servers.
pub fn encode_response(query: &[u8], rcode: u8, truncated: bool, answers: &[Record]) -> Vec<u8> {
    // The question section ends after its name and 4 bytes of type and class.
    let mut r = Reader {
        buf: query,
        pos: 12,
    };
    let question_end = r.name().map(|_| r.pos + 4).unwrap_or(query.len());
    let mut out = query[..question_end.min(query.len())].to_vec();
    let mut flags = 0x8180u16 | u16::from(rcode); // QR, RD, RA
    if truncated {
        flags |= 0x0200;
    }
    out[2..4].copy_from_slice(&flags.to_be_bytes());
    out[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    for a in answers {
        out.extend_from_slice(&[0xC0, 12]); // the question's name
        let (rtype, mut data) = match a {
            Record::A(ip) => (TYPE_A, ip.octets().to_vec()),
            Record::Aaaa(ip) => (TYPE_AAAA, ip.octets().to_vec()),
            Record::Srv { target, port } => {
                let mut d = vec![0, 1, 0, 1];
                d.extend_from_slice(&port.to_be_bytes());
                (TYPE_SRV, d_with_name(d, target))
            }
            Record::Mx { exchange } => (TYPE_MX, d_with_name(vec![0, 10], exchange)),
            Record::Ns { host } => (TYPE_NS, d_with_name(Vec::new(), host)),
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.append(&mut data);
    }
    out
}

fn d_with_name(mut d: Vec<u8>, name: &str) -> Vec<u8> {
    // Names in tests are valid; an invalid one encodes as the root.
    if encode_name(&mut d, name).is_err() {
        d.push(0);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_response_round_trip() {
        let q = encode_query(0x1234, "_prometheus._tcp.example.com.", TYPE_SRV).expect("test step");
        let answers = vec![
            Record::Srv {
                target: "node1.example.com.".into(),
                port: 9100,
            },
            Record::A(Ipv4Addr::new(10, 0, 0, 1)),
            Record::Aaaa("fe80::1".parse().expect("test step")),
            Record::Mx {
                exchange: "mail.example.com.".into(),
            },
            Record::Ns {
                host: "ns1.example.com.".into(),
            },
        ];
        let resp = encode_response(&q, RCODE_SUCCESS, false, &answers);
        let parsed = parse_response(&resp).expect("test step");
        assert_eq!(parsed.id, 0x1234);
        assert!(!parsed.truncated);
        assert_eq!(parsed.rcode, 0);
        assert_eq!(parsed.answers, answers);
        let nx =
            parse_response(&encode_response(&q, RCODE_NAME_ERROR, true, &[])).expect("test step");
        assert_eq!(nx.rcode, RCODE_NAME_ERROR);
        assert!(nx.truncated);
    }

    #[test]
    fn names_are_checked() {
        assert!(encode_query(1, &"a".repeat(64), TYPE_A).is_err());
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
        assert!(encode_query(1, ".", TYPE_A).is_ok());
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let q = encode_query(7, "x.example.", TYPE_A).expect("test step");
        let good = encode_response(&q, 0, false, &[Record::A(Ipv4Addr::LOCALHOST)]);
        // Every truncation is an error or a (shorter) valid parse, never a panic.
        for n in 0..good.len() {
            let _ = parse_response(&good[..n]);
        }
        // A pointer to itself.
        let mut looped = good.clone();
        let at = q.len();
        looped[at] = 0xC0;
        looped[at + 1] = at as u8;
        assert!(parse_response(&looped).is_err());
        // A query is not a response.
        assert!(parse_response(&q).is_err());
        // Escaped label bytes.
        let mut name = String::new();
        push_label(&mut name, b"a.b\x01");
        assert_eq!(name, "a\\.b\\001.");
    }
}
