//! Asking name servers, the way Prometheus's DNS discovery does: servers and search
//! domains from `/etc/resolv.conf`, each candidate name tried on each server in turn,
//! UDP first and TCP when the answer is truncated.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::message::{RCODE_NAME_ERROR, RCODE_SUCCESS, Response, encode_query, parse_response};

/// Name servers and search rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    pub servers: Vec<SocketAddr>,
    /// Search domains, without trailing dots.
    pub search: Vec<String>,
    /// A name with at least this many dots is tried as absolute first.
    pub ndots: usize,
    /// Per attempt, per server.
    pub timeout: Duration,
}

impl Resolver {
    /// Reads `path` (normally `/etc/resolv.conf`). A missing file gives the defaults:
    /// the local server, no search domains.
    pub fn from_resolv_conf(path: &str) -> Resolver {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Resolver::parse_resolv_conf(&text)
    }

    pub fn parse_resolv_conf(text: &str) -> Resolver {
        let mut r = Resolver {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A zone index (`fe80::1%eth0`) is not kept.
                    if let Some(ip) = words
                        .next()
                        .and_then(|w| w.split('%').next())
                        .and_then(|w| w.parse::<IpAddr>().ok())
                    {
                        r.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("search") | Some("domain") => {
                    r.search = words.map(|w| w.trim_end_matches('.').to_owned()).collect();
                }
                Some("options") => {
                    for opt in words {
                        if let Some(n) = opt.strip_prefix("ndots:") {
                            r.ndots = n.parse::<usize>().unwrap_or(1).min(15);
                        } else if let Some(n) = opt.strip_prefix("timeout:") {
                            let secs = n.parse::<u64>().unwrap_or(5).clamp(1, 30);
                            r.timeout = Duration::from_secs(secs);
                        }
                    }
                }
                _ => {}
            }
        }
        if r.servers.is_empty() {
            r.servers
                .push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        r
    }

    /// The absolute names to try for `name`, in order (resolv.conf(5) semantics).
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') {
            return vec![name.to_owned()];
        }
        let absolute = format!("{name}.");
        let dotted_enough = name.matches('.').count() >= self.ndots;
        let mut out = Vec::new();
        if dotted_enough {
            out.push(absolute.clone());
        }
        out.extend(self.search.iter().map(|s| format!("{name}.{s}.")));
        if !dotted_enough {
            out.push(absolute);
        }
        out
    }

    /// Looks `name` up: the first candidate with answers (or a clean empty answer)
    /// wins; when every server says the names do not exist, the result is empty; when
    /// some could not be asked, it is an error.
    pub async fn lookup(&self, name: &str, qtype: u16) -> Result<Response, String> {
        let mut all_valid = true;
        let mut last_error = String::new();
        for candidate in self.candidates(name) {
            match self.ask_any_server(&candidate, qtype).await {
                Err(e) => {
                    all_valid = false;
                    last_error = e;
                }
                Ok(resp) if !resp.answers.is_empty() || resp.rcode == RCODE_SUCCESS => {
                    return Ok(resp);
                }
                Ok(_) => {}
            }
        }
        if all_valid {
            Ok(Response {
                id: 0,
                truncated: false,
                rcode: RCODE_NAME_ERROR,
                answers: Vec::new(),
            })
        } else {
            Err(format!(
                "could not resolve {name:?}: all servers responded with errors to at least \
                 one search domain (last: {last_error})"
            ))
        }
    }

    async fn ask_any_server(&self, name: &str, qtype: u16) -> Result<Response, String> {
        let mut errors = Vec::new();
        for server in &self.servers {
            match self.ask(*server, name, qtype).await {
                Ok(resp) if resp.rcode == RCODE_SUCCESS || resp.rcode == RCODE_NAME_ERROR => {
                    return Ok(resp);
                }
                Ok(resp) => errors.push(format!("{server}: response code {}", resp.rcode)),
                Err(e) => errors.push(format!("{server}: {e}")),
            }
        }
        Err(format!("{name}: {}", errors.join("; ")))
    }

    async fn ask(&self, server: SocketAddr, name: &str, qtype: u16) -> Result<Response, String> {
        let id: u16 = rand::random();
        let query = encode_query(id, name, qtype)?;
        let resp = tokio::time::timeout(self.timeout, ask_udp(server, &query, id))
            .await
            .map_err(|_| "timed out".to_owned())??;
        if !resp.truncated {
            return Ok(resp);
        }
        tokio::time::timeout(self.timeout, ask_tcp(server, &query, id))
            .await
            .map_err(|_| "timed out over TCP".to_owned())?
    }
}

async fn ask_udp(server: SocketAddr, query: &[u8], id: u16) -> Result<Response, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "bad bind address")?
    } else {
        "[::]:0".parse().map_err(|_| "bad bind address")?
    };
    let socket = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(query).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
        match parse_response(&buf[..n]) {
            // Stray or spoofed datagrams with another id are ignored.
            Ok(resp) if resp.id == id => return Ok(resp),
            Ok(_) => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
}

async fn ask_tcp(server: SocketAddr, query: &[u8], id: u16) -> Result<Response, String> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(query.len()).map_err(|_| "query too long")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let resp = parse_response(&buf).map_err(|e| e.to_string())?;
    if resp.id != id {
        return Err("response id does not match the query".into());
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_search_order() {
        let r = Resolver::parse_resolv_conf(
            "# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch svc.cluster.local cluster.local.\noptions ndots:5 timeout:2\n",
        );
        assert_eq!(
            r.servers,
            vec![
                "10.0.0.2:53".parse().expect("test step"),
                "[fe80::1]:53".parse().expect("test step")
            ]
        );
        assert_eq!(r.ndots, 5);
        assert_eq!(r.timeout, Duration::from_secs(2));
        assert_eq!(
            r.candidates("web.default"),
            [
                "web.default.svc.cluster.local.",
                "web.default.cluster.local.",
                "web.default."
            ]
        );
        assert_eq!(r.candidates("a.b."), ["a.b."]);
        let r = Resolver::parse_resolv_conf("search example.com\n");
        assert_eq!(r.servers, vec!["127.0.0.1:53".parse().expect("test step")]);
        assert_eq!(r.candidates("a.b"), ["a.b.", "a.b.example.com."]);
    }
}
