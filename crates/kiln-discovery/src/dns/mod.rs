//! `dns_sd_configs`: targets from DNS records, looked up every `refresh_interval`.
//!
//! SRV records give `target:port`; A, AAAA, MX and NS records give `host:port` with the
//! config's port. Each target carries `__meta_dns_name` (the name asked for) and, by
//! type, `__meta_dns_srv_record_target`, `__meta_dns_srv_record_port`,
//! `__meta_dns_mx_record_target` or `__meta_dns_ns_record_target` (record names keep
//! their final dot; addresses do not). A name whose lookup fails keeps its previous
//! targets; a name that does not exist has none.

pub mod message;
pub mod resolver;

use std::collections::BTreeMap;

use kiln_config::{DnsRecordType, DnsSdConfig};
use kiln_model::Labels;
use tracing::warn;

use crate::group::{ADDRESS_LABEL, TargetGroup};
use crate::manager::Publisher;
use message::Record;
pub use resolver::Resolver;

const RESOLV_CONF: &str = "/etc/resolv.conf";

pub struct DnsDiscovery {
    config: DnsSdConfig,
    /// `None`: read resolv.conf before each refresh, so its changes are picked up.
    resolver: Option<Resolver>,
}

impl DnsDiscovery {
    pub fn new(config: DnsSdConfig) -> Result<DnsDiscovery, String> {
        Ok(DnsDiscovery {
            config,
            resolver: None,
        })
    }

    /// Asks `resolver`'s servers instead of those of resolv.conf.
    pub fn with_resolver(config: DnsSdConfig, resolver: Resolver) -> DnsDiscovery {
        DnsDiscovery {
            config,
            resolver: Some(resolver),
        }
    }

    pub async fn run(self, publisher: Publisher) {
        let mut groups: BTreeMap<String, TargetGroup> = BTreeMap::new();
        loop {
            let resolver = self
                .resolver
                .clone()
                .unwrap_or_else(|| Resolver::from_resolv_conf(RESOLV_CONF));
            for name in &self.config.names {
                match self.refresh_one(&resolver, name).await {
                    Ok(g) => {
                        groups.insert(name.clone(), g);
                    }
                    Err(e) => {
                        warn!(name, err = %e, "dns_sd: keeping the name's previous targets")
                    }
                }
            }
            publisher.publish(
                self.config
                    .names
                    .iter()
                    .filter_map(|n| groups.get(n).cloned())
                    .collect(),
            );
            tokio::time::sleep(
                self.config
                    .refresh_interval
                    .as_std()
                    .max(std::time::Duration::from_millis(100)),
            )
            .await;
        }
    }

    async fn refresh_one(&self, resolver: &Resolver, name: &str) -> Result<TargetGroup, String> {
        let qtype = match self.config.record_type {
            DnsRecordType::Srv => message::TYPE_SRV,
            DnsRecordType::A => message::TYPE_A,
            DnsRecordType::Aaaa => message::TYPE_AAAA,
            DnsRecordType::Mx => message::TYPE_MX,
            DnsRecordType::Ns => message::TYPE_NS,
        };
        let resp = resolver.lookup(name, qtype).await?;
        let port = self.config.port;
        let mut targets = Vec::new();
        for record in resp.answers {
            let (address, meta_name, meta_value, srv_port) = match &record {
                Record::Srv { target, port } => (
                    host_port(target.trim_end_matches('.'), *port),
                    "__meta_dns_srv_record_target",
                    target.clone(),
                    Some(port.to_string()),
                ),
                Record::Mx { exchange } => (
                    host_port(exchange.trim_end_matches('.'), port),
                    "__meta_dns_mx_record_target",
                    exchange.clone(),
                    None,
                ),
                Record::Ns { host } => (
                    host_port(host.trim_end_matches('.'), port),
                    "__meta_dns_ns_record_target",
                    host.clone(),
                    None,
                ),
                Record::A(ip) => (host_port(&ip.to_string(), port), "", String::new(), None),
                Record::Aaaa(ip) => (host_port(&ip.to_string(), port), "", String::new(), None),
            };
            // Records of another type than asked for (a CNAME chain's A records for an
            // SRV query, say) are skipped, as Prometheus does.
            let wanted = matches!(
                (&record, self.config.record_type),
                (Record::Srv { .. }, DnsRecordType::Srv)
                    | (Record::A(_), DnsRecordType::A)
                    | (Record::Aaaa(_), DnsRecordType::Aaaa)
                    | (Record::Mx { .. }, DnsRecordType::Mx)
                    | (Record::Ns { .. }, DnsRecordType::Ns)
            );
            if !wanted {
                continue;
            }
            let mut pairs = vec![(ADDRESS_LABEL, address.as_str()), ("__meta_dns_name", name)];
            if !meta_name.is_empty() {
                pairs.push((meta_name, meta_value.as_str()));
            }
            if let Some(p) = &srv_port {
                pairs.push(("__meta_dns_srv_record_port", p.as_str()));
            }
            targets.push(Labels::from_pairs(&pairs));
        }
        Ok(TargetGroup {
            source: name.to_owned(),
            targets,
            labels: Labels::default(),
        })
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use kiln_config::Duration as ConfigDuration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::message::{RCODE_NAME_ERROR, RCODE_SUCCESS, encode_response};
    use super::*;

    type Zone = Arc<Mutex<BTreeMap<String, (u8, Vec<Record>)>>>;

    /// The question's name in a query, for the fake server.
    fn question_name(query: &[u8]) -> String {
        let mut name = String::new();
        let mut at = 12;
        while let Some(&len) = query.get(at) {
            if len == 0 {
                break;
            }
            let label = &query[at + 1..at + 1 + len as usize];
            name.push_str(std::str::from_utf8(label).expect("test step"));
            name.push('.');
            at += 1 + len as usize;
        }
        name
    }

    /// A fake name server on loopback (UDP and TCP on the same port). Names with more
    /// than `udp_limit` records answer truncated over UDP, as real servers do.
    async fn fake_dns(zone: Zone, udp_limit: usize) -> SocketAddr {
        // The UDP port the system picks may be taken for TCP (by another test's
        // listener or connection): pick again until both are free.
        let (udp, tcp, addr) = {
            let mut tries = 0;
            loop {
                let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("test step");
                let addr = udp.local_addr().expect("test step");
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(tcp) => break (udp, tcp, addr),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                        tries += 1;
                    }
                    Err(e) => panic!("binding the fake name server's TCP port: {e}"),
                }
            }
        };
        let answer = move |zone: &Zone, query: &[u8], over_udp: bool| {
            let zone = zone.lock().expect("lock");
            match zone.get(&question_name(query)) {
                Some((rcode, records)) if over_udp && records.len() > udp_limit => {
                    encode_response(query, *rcode, true, &records[..udp_limit])
                }
                Some((rcode, records)) => encode_response(query, *rcode, false, records),
                None => encode_response(query, RCODE_NAME_ERROR, false, &[]),
            }
        };
        let z = zone.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                let resp = answer(&z, &buf[..n], true);
                let _ = udp.send_to(&resp, peer).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut s, _)) = tcp.accept().await {
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await.expect("test step");
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut q).await.expect("test step");
                let resp = answer(&zone, &q, false);
                let mut framed = (resp.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&resp);
                s.write_all(&framed).await.expect("test step");
            }
        });
        addr
    }

    fn addresses(groups: &[TargetGroup]) -> Vec<String> {
        groups
            .iter()
            .flat_map(|g| &g.targets)
            .map(|t| t.get(ADDRESS_LABEL).unwrap_or_default().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn srv_a_and_aaaa_records_become_targets() {
        let zone: Zone = Arc::default();
        let srv: Vec<Record> = (1..=4)
            .map(|i| Record::Srv {
                target: format!("gpu{i}.example.com."),
                port: 9400 + i,
            })
            .collect();
        zone.lock()
            .expect("test step")
            .insert("_dcgm._tcp.example.com.".into(), (RCODE_SUCCESS, srv));
        zone.lock().expect("lock").insert(
            "trainer.svc.example.com.".into(),
            (
                RCODE_SUCCESS,
                vec![
                    Record::A(Ipv4Addr::new(10, 1, 0, 7)),
                    Record::Aaaa("fd00::7".parse().expect("test step")),
                ],
            ),
        );
        // Two SRV records fit a UDP answer: the rest needs the TCP retry.
        let server = fake_dns(zone.clone(), 2).await;
        let resolver = Resolver {
            servers: vec![server],
            search: vec!["svc.example.com".into()],
            ndots: 1,
            timeout: Duration::from_secs(2),
        };
        let config = |names: &[&str], record_type, port| DnsSdConfig {
            names: names.iter().map(|n| n.to_string()).collect(),
            record_type,
            port,
            refresh_interval: ConfigDuration(200),
        };

        let (publisher, published) = Publisher::for_test();
        let srv_task = tokio::spawn(
            DnsDiscovery::with_resolver(
                config(
                    &["_dcgm._tcp.example.com", "missing.example.com"],
                    DnsRecordType::Srv,
                    0,
                ),
                resolver.clone(),
            )
            .run(publisher),
        );
        let groups = published.next_where(|g| !g.is_empty()).await;
        assert_eq!(
            addresses(&groups),
            [
                "gpu1.example.com:9401",
                "gpu2.example.com:9402",
                "gpu3.example.com:9403",
                "gpu4.example.com:9404"
            ]
        );
        let t = &groups[0].targets[0];
        assert_eq!(t.get("__meta_dns_name"), Some("_dcgm._tcp.example.com"));
        assert_eq!(
            t.get("__meta_dns_srv_record_target"),
            Some("gpu1.example.com.")
        );
        assert_eq!(t.get("__meta_dns_srv_record_port"), Some("9401"));
        // The name that does not exist has an empty group.
        assert_eq!(groups.len(), 2);
        assert!(groups[1].targets.is_empty());
        // A record removed from DNS leaves the targets.
        zone.lock()
            .expect("test step")
            .get_mut("_dcgm._tcp.example.com.")
            .expect("test step")
            .1
            .truncate(1);
        published
            .next_where(|g| addresses(g) == ["gpu1.example.com:9401"])
            .await;
        srv_task.abort();

        // A and AAAA through the search domain, with the config's port.
        for (rt, want) in [
            (DnsRecordType::A, "10.1.0.7:9100"),
            (DnsRecordType::Aaaa, "[fd00::7]:9100"),
        ] {
            let (publisher, published) = Publisher::for_test();
            let task = tokio::spawn(
                DnsDiscovery::with_resolver(config(&["trainer"], rt, 9100), resolver.clone())
                    .run(publisher),
            );
            let groups = published.next_where(|g| !g.is_empty()).await;
            assert_eq!(addresses(&groups), [want]);
            assert_eq!(groups[0].targets[0].get("__meta_dns_name"), Some("trainer"));
            task.abort();
        }
    }

    #[tokio::test]
    async fn unreachable_servers_keep_previous_targets() {
        let zone: Zone = Arc::default();
        zone.lock().expect("lock").insert(
            "db.example.".into(),
            (RCODE_SUCCESS, vec![Record::A(Ipv4Addr::new(10, 0, 0, 1))]),
        );
        let server = fake_dns(zone.clone(), 10).await;
        let resolver = Resolver {
            servers: vec![server],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_millis(300),
        };
        let (publisher, published) = Publisher::for_test();
        let d = DnsDiscovery::with_resolver(
            DnsSdConfig {
                names: vec!["db.example.".into()],
                record_type: DnsRecordType::A,
                port: 5432,
                refresh_interval: ConfigDuration(100),
            },
            resolver.clone(),
        );
        let task = tokio::spawn(d.run(publisher));
        published
            .next_where(|g| addresses(g) == ["10.0.0.1:5432"])
            .await;
        // The server fails (SERVFAIL): the known target stays.
        zone.lock()
            .expect("test step")
            .insert("db.example.".into(), (2, Vec::new()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let groups = published.next_where(|_| true).await;
        assert_eq!(addresses(&groups), ["10.0.0.1:5432"]);
        task.abort();
        // A server that never answers times out.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("test step");
        let mut unreachable = resolver;
        unreachable.servers = vec![silent.local_addr().expect("test step")];
        let err = unreachable
            .lookup("db.example.", message::TYPE_A)
            .await
            .expect_err("a silent server must time out");
        assert!(err.contains("timed out"), "{err}");
    }
}
