//! Who may serve which traffic: host names, routes and the ownership rule that keeps one
//! tenant from being given another's traffic.
//!
//! The rule, applied in one place for the config file and for deploys:
//! - a host name belongs to the one tenant that lists it, unless the operator shares it
//!   (`server.shared_hosts`); a tenant without hosts serves only the hosts no tenant lists;
//! - one app per route on a host;
//! - where two tenants serve the same host (a shared host, or the any-host space of tenants
//!   without hosts), neither may mount a route inside or above the other's: `/api/admin`
//!   under another tenant's `/api` is refused, and so is `/` above it.
//!
//! Within one tenant, routes nest freely (the longest prefix wins).

use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// `/api/` and `api` both become `/api`; `/` stays `/`.
pub fn normalize_route(route: &str) -> Result<String> {
    if !route.starts_with('/') {
        bail!("a route must start with '/'");
    }
    if route.contains(['?', '#', ' ', '%', '\\']) || route.chars().any(char::is_control) {
        bail!("a route is a plain path prefix: no query, fragment, spaces, escapes or '\\'");
    }
    if route
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        bail!("a route may not contain `.` or `..` segments");
    }
    let trimmed = route.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

/// The host a `Host` header or URI authority names, as routing compares it: lower case,
/// without port or trailing dot. `None` for what is not a host (spaces, userinfo, garbage).
pub fn normalize_host(authority: &str) -> Option<String> {
    let authority = authority.trim();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let parsed: http::uri::Authority = authority.parse().ok()?;
    let host = parsed.host().trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Whether `route` serves `path`: whole segments only, so `/api` serves `/api` and `/api/x`,
/// not `/apix`.
pub fn route_matches(route: &str, path: &str) -> bool {
    if route == "/" {
        return true;
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Whether one route lies inside the other (or they are the same): they would share traffic.
pub fn routes_nest(a: &str, b: &str) -> bool {
    route_matches(a, b) || route_matches(b, a)
}

/// One app's hold on traffic.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub tenant: &'a str,
    pub app: &'a str,
    /// The tenant's host names; empty for a tenant that serves the hosts no tenant lists.
    pub hosts: &'a [String],
    pub route: &'a str,
}

/// Why a claim is refused: the app already holding the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub tenant: String,
    pub app: String,
    pub route: String,
    /// The host both serve; `*` for the any-host space.
    pub host: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = match self.host.as_str() {
            "*" => "the hosts no tenant lists".to_string(),
            host => format!("host {host}"),
        };
        write!(
            f,
            "route {} on {host} is held by app `{}` of tenant `{}`",
            self.route, self.app, self.tenant
        )
    }
}

/// The first existing claim `candidate` collides with, by the rule above. Claims of the
/// candidate's own app (same tenant and name) are the app itself and never collide.
pub fn conflict<'a>(
    existing: impl IntoIterator<Item = Claim<'a>>,
    candidate: &Claim<'_>,
) -> Option<Conflict> {
    existing.into_iter().find_map(|held| {
        if held.tenant == candidate.tenant && held.app == candidate.app {
            return None;
        }
        let host = common_host(held.hosts, candidate.hosts)?;
        let collides = if held.tenant == candidate.tenant {
            held.route == candidate.route
        } else {
            routes_nest(held.route, candidate.route)
        };
        collides.then(|| Conflict {
            tenant: held.tenant.to_string(),
            app: held.app.to_string(),
            route: held.route.to_string(),
            host,
        })
    })
}

/// A host both host lists serve. Tenants without hosts share the any-host space (`*`), which
/// never includes a host some tenant lists.
fn common_host(a: &[String], b: &[String]) -> Option<String> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Some("*".into()),
        (false, false) => a.iter().find(|h| b.contains(h)).cloned(),
        _ => None,
    }
}

/// Checks that every host name is listed by one tenant only, unless `shared` names it.
/// `tenants` are (tenant, its config key, its hosts).
pub fn check_host_owners<'a>(
    tenants: impl IntoIterator<Item = (&'a str, &'a [String])>,
    shared: &[String],
) -> Result<()> {
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for (tenant, hosts) in tenants {
        for host in hosts {
            if shared.contains(host) {
                continue;
            }
            if let Some(owner) = owners.insert(host, tenant)
                && owner != tenant
            {
                bail!(
                    "host {host:?} is listed by tenants `{owner}` and `{tenant}`: a host name \
                     belongs to one tenant. List it in `server.shared_hosts` to let several \
                     tenants serve it (their routes may then not overlap), or remove it from one"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_whole_segments() {
        assert!(route_matches("/", "/anything"));
        assert!(route_matches("/api", "/api"));
        assert!(route_matches("/api", "/api/users"));
        assert!(!route_matches("/api", "/apix"));
        assert!(!route_matches("/api", "/"));
        assert!(routes_nest("/api", "/api/admin"));
        assert!(routes_nest("/", "/api"));
        assert!(!routes_nest("/api", "/apix"));
    }

    #[test]
    fn routes_are_normalized_and_hosts_lose_their_port() {
        assert_eq!(normalize_route("/api/").unwrap(), "/api");
        assert_eq!(normalize_route("/").unwrap(), "/");
        assert!(normalize_route("api").is_err());
        assert!(normalize_route("/a/../b").is_err());
        assert!(normalize_route("/%61pi").is_err());
        assert_eq!(
            normalize_host("Acme.Localhost:8080").as_deref(),
            Some("acme.localhost")
        );
        assert_eq!(normalize_host("acme.test.").as_deref(), Some("acme.test"));
        assert_eq!(normalize_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("[::1]").as_deref(), Some("[::1]"));
        assert_eq!(normalize_host("user@acme.test"), None);
        assert_eq!(normalize_host("a b"), None);
        assert_eq!(normalize_host(""), None);
    }

    fn claim<'a>(tenant: &'a str, app: &'a str, hosts: &'a [String], route: &'a str) -> Claim<'a> {
        Claim {
            tenant,
            app,
            hosts,
            route,
        }
    }

    #[test]
    fn another_tenants_route_may_not_be_entered_or_covered_on_a_shared_host() {
        let shared = ["shop.test".to_string()];
        let held = [claim("a", "api", &shared, "/api")];
        for route in ["/api", "/api/admin", "/"] {
            let found = conflict(held, &claim("b", "x", &shared, route)).unwrap();
            assert_eq!((found.tenant.as_str(), found.app.as_str()), ("a", "api"));
        }
        assert_eq!(conflict(held, &claim("b", "x", &shared, "/web")), None);
        // The owner nests its own routes; the same route twice is still one too many.
        assert_eq!(
            conflict(held, &claim("a", "admin", &shared, "/api/admin")),
            None
        );
        assert!(conflict(held, &claim("a", "other", &shared, "/api")).is_some());
        // Replacing an app is not a conflict with itself.
        assert_eq!(conflict(held, &claim("a", "api", &shared, "/")), None);
    }

    #[test]
    fn the_any_host_space_is_shared_by_tenants_without_hosts_and_by_them_only() {
        let none: [String; 0] = [];
        let own = ["a.test".to_string()];
        let held = [claim("x", "root", &none, "/")];
        assert!(conflict(held, &claim("y", "api", &none, "/api")).is_some());
        assert_eq!(conflict(held, &claim("a", "api", &own, "/api")), None);
    }

    #[test]
    fn a_host_belongs_to_one_tenant_unless_shared() {
        let a = ["a.test".to_string(), "shop.test".to_string()];
        let b = ["shop.test".to_string()];
        let err = check_host_owners([("a", &a[..]), ("b", &b[..])], &[]).unwrap_err();
        assert!(err.to_string().contains("shared_hosts"), "{err}");
        check_host_owners([("a", &a[..]), ("b", &b[..])], &["shop.test".into()]).unwrap();
    }
}
