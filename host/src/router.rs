//! Which app serves a request: by host name, then by the longest route prefix.
//!
//! A host some tenant lists is served by that tenant's apps only (by the tenants sharing it,
//! when the operator shares it), and a path none of them routes is a 404: traffic for a host
//! never falls through to another tenant. Tenants without hosts serve every other host. Who
//! may claim what is decided in [`crate::routes`].

use crate::apps::App;
use crate::routes::route_matches;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Router {
    /// Every host a tenant lists, with its apps (possibly none yet).
    by_host: HashMap<String, Vec<Arc<App>>>,
    any_host: Vec<Arc<App>>,
}

impl Router {
    /// A router over `apps`, each served on its tenant's hosts; `listed_hosts` are the hosts
    /// every tenant lists, apps or not.
    pub fn new<'a>(
        apps: impl IntoIterator<Item = Arc<App>>,
        listed_hosts: impl IntoIterator<Item = &'a String>,
    ) -> Router {
        let mut router = Router {
            by_host: listed_hosts
                .into_iter()
                .map(|h| (h.clone(), Vec::new()))
                .collect(),
            any_host: Vec::new(),
        };
        for app in apps {
            if app.tenant.hosts.is_empty() {
                insert_sorted(&mut router.any_host, app);
            } else {
                for host in &app.tenant.hosts {
                    insert_sorted(router.by_host.entry(host.clone()).or_default(), app.clone());
                }
            }
        }
        router
    }

    /// The app for a request to `host` (as [`crate::routes::normalize_host`] gives it) and
    /// `path`.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<App>> {
        let apps = self.by_host.get(host).unwrap_or(&self.any_host);
        apps.iter().find(|app| route_matches(&app.route, path))
    }
}

/// Keeps each list ordered longest route first, so the first match is the longest.
fn insert_sorted(apps: &mut Vec<Arc<App>>, app: Arc<App>) {
    let at = apps.partition_point(|a| a.route.len() >= app.route.len());
    apps.insert(at, app);
}
