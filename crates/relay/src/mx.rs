//! MX delivery: resolve each recipient domain's mail exchangers and try
//! them in preference order (RFC 5321 §5.1).

use crate::Pool;
use crate::client::{ClientError, ConnectSettings};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use std::net::{IpAddr, SocketAddr};
use tomare_model::{Address, OutcomeClass, Payload, RcptOutcome};

pub struct Resolver(TokioResolver);

impl Resolver {
    /// `nameservers` as `ip:port`; the system configuration when empty.
    pub fn new(nameservers: &[String]) -> Result<Resolver, String> {
        if nameservers.is_empty() {
            let builder = TokioResolver::builder_tokio().map_err(|e| e.to_string())?;
            return Ok(Resolver(builder.build()));
        }
        let mut group = NameServerConfigGroup::new();
        for ns in nameservers {
            let addr: SocketAddr = ns.parse().map_err(|_| format!("nameserver {ns:?} is not ip:port"))?;
            group.merge(NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true));
        }
        let config = ResolverConfig::from_parts(None, vec![], group);
        Ok(Resolver(TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).build()))
    }

    /// Mail exchangers for `domain`, best first. `Err` carries the class and
    /// the reason when there is nowhere to deliver.
    async fn exchangers(&self, domain: &str) -> Result<Vec<String>, (OutcomeClass, String)> {
        // Trailing dot: an absolute name, never searched in local domains.
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.0.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .iter()
                    .map(|r| (r.preference(), r.exchange().to_utf8().trim_end_matches('.').to_string()))
                    .collect();
                mx.sort();
                // RFC 7505 null MX: the domain accepts no mail.
                if mx.len() == 1 && mx[0].1.is_empty() {
                    return Err((OutcomeClass::Permanent, format!("556 5.1.10 {domain} accepts no mail (null MX)")));
                }
                Ok(mx.into_iter().map(|(_, h)| h).collect())
            }
            Err(e) if e.is_nx_domain() => {
                Err((OutcomeClass::Permanent, format!("550 5.1.2 domain {domain} does not exist")))
            }
            // No MX records: the domain itself is the implicit MX.
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_string()]),
            Err(e) => Err((OutcomeClass::Temporary, format!("451 4.4.3 DNS lookup for {domain} failed: {e}"))),
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    resolver: &Resolver,
    pool: &Pool,
    port: u16,
    settings: &ConnectSettings,
    domain: &str,
    mail_from: &Address,
    rcpts: &[Address],
    data: &Payload,
) -> Vec<RcptOutcome> {
    let fail = |class, reply: String| {
        rcpts.iter().map(|r| RcptOutcome { address: r.clone(), class, reply: reply.clone() }).collect()
    };
    let hosts = match resolver.exchangers(domain).await {
        Ok(h) => h,
        Err((class, reply)) => return fail(class, reply),
    };
    let mut last: Option<ClientError> = None;
    for host in &hosts {
        // Addresses come from our resolver too, so `[delivery.mx]
        // nameservers` governs the whole lookup.
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match resolver.0.lookup_ip(format!("{}.", host.trim_end_matches('.'))).await {
                Ok(ips) => ips.iter().collect(),
                Err(e) => {
                    tracing::debug!(%domain, %host, error = %e, "MX host has no address");
                    continue;
                }
            },
        };
        for addr in addrs {
            match pool.try_send(host, Some(addr), port, settings, mail_from, rcpts, data).await {
                Ok(outcomes) => return outcomes,
                // A 5xx greeting or EHLO from one MX says nothing about the
                // next: try them all, then report the last problem.
                Err(e) => {
                    tracing::debug!(%domain, %host, %addr, error = %e, "MX attempt failed");
                    last = Some(e);
                }
            }
        }
    }
    let reply = match last {
        Some(e) => format!("{domain}: all {} mail exchangers failed, last: {e}", hosts.len()),
        None => format!("{domain}: no mail exchanger"),
    };
    fail(OutcomeClass::Temporary, reply)
}
