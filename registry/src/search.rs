//! `search`: the repositories of registries that list them (`/v2/_catalog`), filtered by
//! a term; and the tags of one repository.

use crate::client::{read_small, status_error, Body, Client, ClientOptions};
use crate::conf::RegistriesConf;
use crate::reference::is_qualified;
use crate::{RegistryError, Result};

/// One repository found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `registry/repository`
    pub name: String,
    /// With `list_tags`: its tags.
    pub tags: Vec<String>,
}

/// Searches `term` (`registry/term` searches that registry only, else every
/// unqualified-search registry). `list_tags`: `term` names one repository; list its tags.
pub fn search(
    conf: &RegistriesConf,
    term: &str,
    opts: &ClientOptions,
    list_tags: bool,
    limit: usize,
) -> Result<Vec<Found>> {
    let (registries, filter): (Vec<String>, String) =
        if is_qualified(&format!("{term}/x")) && !term.contains('/') {
            (vec![term.to_string()], String::new())
        } else if is_qualified(term) {
            let (r, f) = term.split_once('/').expect("qualified");
            (vec![r.to_string()], f.to_string())
        } else {
            let search = if conf.search.is_empty() {
                vec!["docker.io".to_string()]
            } else {
                conf.search.clone()
            };
            (search, term.to_string())
        };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for registry in &registries {
        let insecure = opts
            .tls_verify
            .map(|v| !v)
            .unwrap_or_else(|| conf.insecure(registry));
        let result = (|| -> Result<Vec<Found>> {
            let client = Client::connect(registry, insecure, opts, registry)?;
            if list_tags {
                let repo = filter.trim_start_matches('/');
                let tags = crate::pull::list_tags(&client, repo)?;
                return Ok(vec![Found {
                    name: format!("{registry}/{repo}"),
                    tags,
                }]);
            }
            let resp = client.send(
                "GET",
                "/v2/_catalog?n=1000",
                "registry:catalog:*",
                &[],
                Body::Empty,
            )?;
            let status = resp.status().as_u16();
            if status == 404 || status == 401 || status == 403 || status == 405 {
                return Err(RegistryError::Other(format!(
                    "registry {registry} does not support listing its repositories (GET /v2/_catalog answered HTTP {status})"
                )));
            }
            if status != 200 {
                return Err(status_error(&format!("searching {registry}"), resp));
            }
            let body = read_small(resp, 64 << 20).map_err(|e| RegistryError::Io(e.to_string()))?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| RegistryError::Other(format!("{registry}: invalid catalog: {e}")))?;
            Ok(v["repositories"]
                .as_array()
                .map(|a| a.iter().filter_map(|r| r.as_str()).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.contains(filter.as_str()))
                .take(limit)
                .map(|r| Found {
                    name: format!("{registry}/{r}"),
                    tags: vec![],
                })
                .collect())
        })();
        match result {
            Ok(found) => out.extend(found),
            Err(e) => errors.push(e),
        }
    }
    if out.is_empty() && !errors.is_empty() {
        return Err(errors.remove(0));
    }
    Ok(out)
}
