//! The one guard for every URL a user gives Herald to call (webhook endpoints, the `http`
//! provider's gateway, a platform's API base): a URL whose host is or resolves to a loopback,
//! private, link-local, CGNAT, multicast or unspecified address is refused when it is saved, and
//! again when it is called — by the HTTP client's resolver, after DNS, so that the address
//! connected to is the address checked (a name that resolved to a public address at save time
//! and to 127.0.0.1 later is still refused). Redirects are never followed: a public endpoint could
//! otherwise send Herald on to a private one.
//!
//! `HERALD_ALLOW_PRIVATE_URLS=true` turns the guard off, for gateways on a private network and
//! for tests against mock servers on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether private addresses may be called, and the checks that follow from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlGuard {
    allow_private: bool,
}

/// Why a URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("is not a valid URL: {0}")]
    Invalid(String),
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("has no host")]
    NoHost,
    #[error(
        "points to a private address ({0}); set HERALD_ALLOW_PRIVATE_URLS=true to allow private networks"
    )]
    Private(String),
    #[error("cannot be resolved: {0}")]
    Unresolvable(String),
}

impl UrlGuard {
    /// Refuses private addresses.
    pub const STRICT: UrlGuard = UrlGuard {
        allow_private: false,
    };
    /// Lets every address through (HERALD_ALLOW_PRIVATE_URLS).
    pub const ALLOW_PRIVATE: UrlGuard = UrlGuard {
        allow_private: true,
    };

    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    pub fn allows_private(self) -> bool {
        self.allow_private
    }

    /// Parses and checks `url` as written: an http(s) URL without credentials whose host is not
    /// a private address literal nor `localhost`. Names are checked when they are resolved.
    pub fn parse(self, url: &str) -> Result<Url, UrlRefused> {
        let parsed = Url::parse(url).map_err(|error| UrlRefused::Invalid(error.to_string()))?;
        self.check(&parsed)?;
        Ok(parsed)
    }

    /// [`parse`](Self::parse)'s checks on a parsed URL; the last check before each request.
    pub fn check(self, url: &Url) -> Result<(), UrlRefused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Credentials);
        }
        let host = url.host().ok_or(UrlRefused::NoHost)?;
        if self.allow_private {
            return Ok(());
        }
        match host {
            url::Host::Ipv4(ip) => refuse_private(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => refuse_private(IpAddr::V6(ip)),
            url::Host::Domain(name) => {
                if is_local_name(name) {
                    Err(UrlRefused::Private(name.to_owned()))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// [`parse`](Self::parse), and then the host's addresses now: what a user saves is refused
    /// at once when its name leads somewhere private, rather than at its first call.
    pub async fn parse_and_resolve(self, url: &str) -> Result<Url, UrlRefused> {
        let parsed = self.parse(url)?;
        if self.allow_private {
            return Ok(parsed);
        }
        if let Some(url::Host::Domain(name)) = parsed.host() {
            let port = parsed.port_or_known_default().unwrap_or(443);
            let addresses = tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| UrlRefused::Unresolvable(error.to_string()))?;
            for address in addresses {
                refuse_private(address.ip())?;
            }
        }
        Ok(parsed)
    }

    /// An HTTP client for users' URLs: it follows no redirect and, unless private addresses are
    /// allowed, connects only to the public addresses its resolver lets through.
    pub fn client(self) -> reqwest::Client {
        self.client_resolving_with(Arc::new(SystemResolver))
    }

    /// [`client`](Self::client) with names resolved by `resolver` before the guard sees them
    /// (tests resolve a name of their own to 127.0.0.1).
    pub fn client_resolving_with(self, resolver: Arc<dyn Resolve>) -> reqwest::Client {
        let builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        let builder = if self.allow_private {
            builder.dns_resolver(Arc::new(Plain(resolver)))
        } else {
            // A proxy would resolve and connect in the guard's place.
            builder
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver { inner: resolver }))
        };
        // Building fails only on a TLS back-end that cannot start: the default client is the
        // one answer left.
        builder.build().unwrap_or_default()
    }
}

fn refuse_private(ip: IpAddr) -> Result<(), UrlRefused> {
    if is_private(ip) {
        Err(UrlRefused::Private(ip.to_string()))
    } else {
        Ok(())
    }
}

/// `localhost` and the names under it resolve to loopback by definition (RFC 6761).
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Loopback, private (RFC 1918, unique-local), link-local (cloud metadata at 169.254.169.254),
/// CGNAT, multicast, broadcast, unspecified and "this network" addresses, and IPv6 forms that
/// embed one of them (IPv4-mapped, IPv4-compatible, NAT64).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_private_v4(ip),
        IpAddr::V6(ip) => is_private_v6(ip),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || a == 0
        // CGNAT, 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // Reserved for future use, 240.0.0.0/4.
        || a >= 240
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    let segments = ip.segments();
    // NAT64's well-known prefix, 64:ff9b::/96, reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_private_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    // Deprecated IPv4-compatible addresses, ::a.b.c.d.
    if segments[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        let [.., high, low] = segments;
        return is_private_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Site-local, fec0::/10: deprecated, still routed privately by some networks.
        || (segments[0] & 0xffc0) == 0xfec0
}

/// The system's resolver (getaddrinfo on a blocking thread, as reqwest's default does).
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// `Arc<dyn Resolve>` as the sized resolver reqwest's builder takes.
struct Plain(Arc<dyn Resolve>);

impl Resolve for Plain {
    fn resolve(&self, name: Name) -> Resolving {
        self.0.resolve(name)
    }
}

/// Resolves with `inner` and lets only public addresses through: the connection goes to one of
/// the addresses checked here, never to a second resolution's answer.
struct GuardedResolver {
    inner: Arc<dyn Resolve>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let resolving = self.inner.resolve(name);
        Box::pin(async move {
            if is_local_name(&host) {
                return Err(Box::new(UrlRefused::Private(host)) as _);
            }
            let addresses: Vec<SocketAddr> = resolving.await?.collect();
            if let Some(private) = addresses.iter().find(|address| is_private(address.ip())) {
                return Err(Box::new(UrlRefused::Private(format!(
                    "{host} resolves to {}",
                    private.ip()
                ))) as _);
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_private_form_is_refused_and_public_addresses_pass() {
        let guard = UrlGuard::STRICT;
        for url in [
            "http://127.0.0.1/hook",
            "http://127.1.2.3:8080/",
            "http://10.0.0.5/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://100.127.255.254/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://0.0.0.0/",
            "http://0.1.2.3/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::7f00:1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost:3000/",
            // Decimal and hexadecimal IPv4 forms are normalised by the URL parser first.
            "http://2130706433/",
            "http://0x7f000001/",
        ] {
            assert!(
                matches!(guard.parse(url), Err(UrlRefused::Private(_))),
                "{url} must be refused, got {:?}",
                guard.parse(url)
            );
            assert!(UrlGuard::ALLOW_PRIVATE.parse(url).is_ok(), "{url}");
        }
        for url in [
            "https://example.com/hooks",
            "http://93.184.216.34/",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/",
            "http://[::ffff:93.184.216.34]/",
        ] {
            assert!(guard.parse(url).is_ok(), "{url}: {:?}", guard.parse(url));
        }
    }

    #[test]
    fn only_http_urls_without_credentials_are_taken() {
        for guard in [UrlGuard::STRICT, UrlGuard::ALLOW_PRIVATE] {
            assert_eq!(guard.parse("ftp://example.com/"), Err(UrlRefused::Scheme));
            assert_eq!(guard.parse("file:///etc/passwd"), Err(UrlRefused::Scheme));
            assert_eq!(
                guard.parse("https://user:pass@example.com/"),
                Err(UrlRefused::Credentials)
            );
            assert_eq!(
                guard.parse("https://token@example.com/"),
                Err(UrlRefused::Credentials)
            );
            assert!(matches!(
                guard.parse("not a url"),
                Err(UrlRefused::Invalid(_))
            ));
        }
    }

    /// Resolves every name to 127.0.0.1, as a hostile DNS record would.
    struct ToLoopback;

    impl Resolve for ToLoopback {
        fn resolve(&self, _name: Name) -> Resolving {
            Box::pin(async {
                Ok(Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0)))) as Addrs)
            })
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_when_called() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let url = format!("http://hooks.example.test:{port}/");
        // The name itself passes the save-time check of its form…
        assert!(UrlGuard::STRICT.parse(&url).is_ok());
        // …and the client refuses it once it has resolved it.
        let client = UrlGuard::STRICT.client_resolving_with(Arc::new(ToLoopback));
        let error = client.get(&url).send().await.unwrap_err();
        let chain = crate::providers::http::error_chain(&error);
        assert!(chain.contains("private address"), "{chain}");
        // With private addresses allowed, the same request reaches the listener.
        let client = UrlGuard::ALLOW_PRIVATE.client_resolving_with(Arc::new(ToLoopback));
        let accept = tokio::spawn(async move { server.accept().await.is_ok() });
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            client.get(&url).send(),
        )
        .await;
        assert!(accept.await.unwrap(), "the allowed request connected");
    }

    #[tokio::test]
    async fn localhost_is_refused_at_save_time_without_a_lookup() {
        assert!(matches!(
            UrlGuard::STRICT
                .parse_and_resolve("http://localhost:9/")
                .await,
            Err(UrlRefused::Private(_))
        ));
    }
}
