//! Which app serves a request: by Host header, then by the longest route prefix.
//!
//! Tenants that name hosts are tried first for those hosts; tenants without hosts serve any
//! host. A route matches on whole path segments: `/api` serves `/api` and `/api/x`, not `/apix`.

use crate::apps::App;
use crate::config::normalize_host;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Router {
    by_host: HashMap<String, Vec<Arc<App>>>,
    any_host: Vec<Arc<App>>,
}

impl Router {
    /// A router over `apps`, each served on its tenant's hosts.
    pub fn new(apps: impl IntoIterator<Item = Arc<App>>) -> Router {
        let mut router = Router::default();
        for app in apps {
            router.add(app);
        }
        router
    }

    fn add(&mut self, app: Arc<App>) {
        if app.tenant.hosts.is_empty() {
            insert_sorted(&mut self.any_host, app);
        } else {
            for host in &app.tenant.hosts.clone() {
                insert_sorted(
                    self.by_host.entry(normalize_host(host)).or_default(),
                    app.clone(),
                );
            }
        }
    }

    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<App>> {
        let specific = host
            .and_then(|h| self.by_host.get(&normalize_host(h)))
            .and_then(|apps| longest_match(apps, path));
        specific.or_else(|| longest_match(&self.any_host, path))
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.any_host.iter().chain(self.by_host.values().flatten())
    }
}

/// Keeps each list ordered longest route first, so the first match is the longest.
fn insert_sorted(apps: &mut Vec<Arc<App>>, app: Arc<App>) {
    let at = apps.partition_point(|a| a.route.len() >= app.route.len());
    apps.insert(at, app);
}

fn longest_match<'a>(apps: &'a [Arc<App>], path: &str) -> Option<&'a Arc<App>> {
    apps.iter().find(|app| route_matches(&app.route, path))
}

fn route_matches(route: &str, path: &str) -> bool {
    if route == "/" {
        return true;
    }
    match path.strip_prefix(route) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::route_matches;

    #[test]
    fn routes_match_whole_segments() {
        assert!(route_matches("/", "/anything"));
        assert!(route_matches("/api", "/api"));
        assert!(route_matches("/api", "/api/users"));
        assert!(!route_matches("/api", "/apix"));
        assert!(!route_matches("/api", "/"));
    }
}
