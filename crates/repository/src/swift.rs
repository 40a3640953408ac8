//! A repository in an OpenStack Swift container, spelled as restic spells it:
//! `swift:container:/prefix`, reached with the environment restic (and an `overcloudrc`) sets:
//! - Keystone v3: `OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_USER_DOMAIN_NAME`,
//!   `OS_PROJECT_NAME`, `OS_PROJECT_DOMAIN_NAME`, or an application credential
//!   (`OS_APPLICATION_CREDENTIAL_ID`, `OS_APPLICATION_CREDENTIAL_SECRET`); the object-store
//!   endpoint of `OS_INTERFACE` (public) in `OS_REGION_NAME` from the token's catalog;
//! - v1 (tempauth, swauth): `ST_AUTH`, `ST_USER`, `ST_KEY`;
//! - a ready token: `OS_STORAGE_URL` and `OS_AUTH_TOKEN` (not renewable).
//!
//! Coffer obtains the token itself and renews it before it expires (a quarter of its lifetime
//! before, at most five minutes), and once more when the proxy refuses it: a token that
//! expires mid-run does not fail the run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use crate::objects::{self, ObjectStore, StoreError};

/// Where the credentials come from, said when they are refused.
const CREDENTIALS: &str = "give Keystone's OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, \
                           OS_PROJECT_NAME (or an application credential: \
                           OS_APPLICATION_CREDENTIAL_ID and _SECRET), or tempauth's ST_AUTH, \
                           ST_USER and ST_KEY (source the cloud's rc file)";

/// A Swift repository's address: container and prefix.
#[derive(Clone)]
pub struct SwiftPlace {
    /// The container.
    pub container: String,
    /// The object name prefix in it (may be empty).
    pub prefix: String,
}

impl std::fmt::Debug for SwiftPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for SwiftPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "swift:{}:/{}", self.container, self.prefix)
    }
}

impl SwiftPlace {
    /// Parse `swift:container:/prefix`; `None` when `spec` is not one.
    pub fn parse(spec: &str) -> Option<Result<Self, String>> {
        let rest = spec.strip_prefix("swift:")?;
        Some(match rest.split_once(':') {
            Some((container, prefix)) if !container.is_empty() && !container.contains('/') => {
                Ok(Self {
                    container: container.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                })
            }
            _ => Err(format!(
                "`{spec}` is not a Swift location: write swift:container:/prefix"
            )),
        })
    }

    /// The store, authenticated as the environment says.
    pub(crate) fn open(&self) -> Result<SwiftStore, String> {
        Ok(SwiftStore {
            place: self.clone(),
            auth: Auth::from_env()?,
            token: Mutex::new(None),
            http: objects::client(),
        })
    }
}

/// How a token is obtained.
enum Auth {
    /// Keystone v3: the URL of its `/v3` and the request body.
    Keystone {
        url: String,
        body: serde_json::Value,
        interface: String,
        region: Option<String>,
    },
    /// Swift's v1 auth (tempauth).
    V1 {
        url: String,
        user: String,
        key: String,
    },
    /// A token given ready.
    Ready(Token),
}

/// A token and the storage URL it is for.
#[derive(Clone)]
struct Token {
    value: String,
    storage_url: String,
    /// When to obtain another one.
    renew_at: Option<Instant>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Auth {
    fn from_env() -> Result<Self, String> {
        if let Some(url) = var("OS_AUTH_URL") {
            let url = url.trim_end_matches('/');
            let url = if url.ends_with("/v3") {
                url.to_string()
            } else {
                format!("{url}/v3")
            };
            let domain = |name: &str, id: &str| match (var(id), var(name)) {
                (Some(id), _) => serde_json::json!({ "id": id }),
                (None, name) => serde_json::json!({ "name": name.unwrap_or("Default".into()) }),
            };
            let body = if let Some(id) = var("OS_APPLICATION_CREDENTIAL_ID") {
                let secret = var("OS_APPLICATION_CREDENTIAL_SECRET")
                    .ok_or("OS_APPLICATION_CREDENTIAL_ID is set but not its _SECRET")?;
                serde_json::json!({ "auth": { "identity": {
                    "methods": ["application_credential"],
                    "application_credential": { "id": id, "secret": secret } } } })
            } else {
                let (Some(user), Some(password)) = (var("OS_USERNAME"), var("OS_PASSWORD")) else {
                    return Err(format!(
                        "OS_AUTH_URL is set but not OS_USERNAME and OS_PASSWORD: {CREDENTIALS}"
                    ));
                };
                let project = var("OS_PROJECT_NAME").or_else(|| var("OS_TENANT_NAME"));
                let mut body = serde_json::json!({ "auth": { "identity": {
                    "methods": ["password"],
                    "password": { "user": {
                        "name": user, "password": password,
                        "domain": domain("OS_USER_DOMAIN_NAME", "OS_USER_DOMAIN_ID") } } } } });
                if let Some(project) = project {
                    body["auth"]["scope"] = serde_json::json!({ "project": {
                        "name": project,
                        "domain": domain("OS_PROJECT_DOMAIN_NAME", "OS_PROJECT_DOMAIN_ID") } });
                }
                body
            };
            let interface = var("OS_INTERFACE").unwrap_or_else(|| "public".into());
            return Ok(Self::Keystone {
                url,
                body,
                interface: interface.trim_end_matches("URL").to_string(),
                region: var("OS_REGION_NAME"),
            });
        }
        if let Some(url) = var("ST_AUTH") {
            let (Some(user), Some(key)) = (var("ST_USER"), var("ST_KEY")) else {
                return Err(format!(
                    "ST_AUTH is set but not ST_USER and ST_KEY: {CREDENTIALS}"
                ));
            };
            return Ok(Self::V1 { url, user, key });
        }
        if let (Some(storage_url), Some(value)) = (var("OS_STORAGE_URL"), var("OS_AUTH_TOKEN")) {
            return Ok(Self::Ready(Token {
                value,
                storage_url,
                renew_at: None,
            }));
        }
        Err(format!("no Swift credentials: {CREDENTIALS}"))
    }

    /// A new token.
    fn obtain(&self, http: &reqwest::blocking::Client) -> Result<Token, StoreError> {
        let started = Instant::now();
        // Renew a quarter of the lifetime before the end, at most five minutes before.
        let renew_at = |lifetime: Duration| {
            Some(started + lifetime - (lifetime / 4).min(Duration::from_secs(300)))
        };
        match self {
            Self::Ready(token) => Ok(token.clone()),
            Self::V1 { url, user, key } => {
                let r = objects::send("tempauth", CREDENTIALS, || {
                    http.get(url)
                        .header("X-Auth-User", user)
                        .header("X-Auth-Key", key)
                })?;
                let header = |name: &str| {
                    r.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let (Some(value), Some(storage_url)) =
                    (header("X-Auth-Token"), header("X-Storage-Url"))
                else {
                    return Err(StoreError::Http {
                        request: format!("GET {url}"),
                        status: r.status().as_u16(),
                        body: "no X-Auth-Token and X-Storage-Url in the answer".into(),
                    });
                };
                let lifetime = header("X-Auth-Token-Expires")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_secs);
                Ok(Token {
                    value,
                    storage_url,
                    renew_at: lifetime.and_then(renew_at),
                })
            }
            Self::Keystone {
                url,
                body,
                interface,
                region,
            } => {
                let r = objects::send("Keystone token", CREDENTIALS, || {
                    http.post(format!("{url}/auth/tokens")).json(body)
                })?;
                let value = r
                    .headers()
                    .get("X-Subject-Token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let bad = |why: String| StoreError::Http {
                    request: format!("POST {url}/auth/tokens"),
                    status: 201,
                    body: why,
                };
                let answer: TokenAnswer = r.json().map_err(|e| bad(e.to_string()))?;
                let value = value.ok_or_else(|| bad("no X-Subject-Token".into()))?;
                let storage_url = answer
                    .token
                    .catalog
                    .iter()
                    .filter(|s| s.kind == "object-store")
                    .flat_map(|s| &s.endpoints)
                    .find(|e| {
                        e.interface == *interface
                            && region.as_ref().is_none_or(|r| {
                                e.region_id.as_ref().or(e.region.as_ref()) == Some(r)
                            })
                    })
                    .map(|e| e.url.clone())
                    .ok_or_else(|| {
                        bad(format!(
                            "the catalog has no {interface} object-store endpoint{}",
                            region
                                .as_ref()
                                .map(|r| format!(" in region {r}"))
                                .unwrap_or_default()
                        ))
                    })?;
                let expires: jiff::Timestamp = answer
                    .token
                    .expires_at
                    .parse()
                    .map_err(|e| bad(format!("expires_at: {e}")))?;
                let left = expires.duration_since(jiff::Timestamp::now());
                let lifetime = Duration::try_from(left).unwrap_or_default();
                Ok(Token {
                    value,
                    storage_url,
                    renew_at: renew_at(lifetime),
                })
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: String,
    #[serde(default)]
    catalog: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    url: String,
    region: Option<String>,
    region_id: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    name: String,
    bytes: u64,
}

/// A Swift container reached with a token it renews.
pub(crate) struct SwiftStore {
    place: SwiftPlace,
    auth: Auth,
    token: Mutex<Option<Token>>,
    http: reqwest::blocking::Client,
}

impl SwiftStore {
    /// The current token, a new one when there is none, it is due, or `fresh` asks.
    fn token(&self, fresh: bool) -> Result<Token, StoreError> {
        let mut held = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let due = held
            .as_ref()
            .and_then(|t| t.renew_at)
            .is_some_and(|at| Instant::now() >= at);
        if fresh || due || held.is_none() {
            if held.is_some() {
                tracing::debug!("{}: renewing the Swift token", self.place);
            }
            *held = Some(self.auth.obtain(&self.http)?);
        }
        Ok(held.clone().expect("set above"))
    }

    /// The URL of `key` in the container (the container itself when `None`).
    fn url(&self, token: &Token, key: Option<&str>) -> url::Url {
        let mut url = url::Url::parse(&token.storage_url).expect("checked when first used");
        {
            let mut segments = url.path_segments_mut().expect("an http URL");
            segments.pop_if_empty().push(&self.place.container);
            if let Some(key) = key {
                segments.extend(key.split('/'));
            }
        }
        url
    }

    /// Send what `build` makes with the token, renewing it once if the proxy refuses it.
    fn send(
        &self,
        what: &str,
        build: impl Fn(&Token) -> reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, StoreError> {
        let token = self.token(false)?;
        if url::Url::parse(&token.storage_url).is_err() {
            return Err(StoreError::Http {
                request: what.to_string(),
                status: 0,
                body: format!("the storage URL `{}` is not a URL", token.storage_url),
            });
        }
        match objects::send(what, CREDENTIALS, || {
            build(&token).header("X-Auth-Token", &token.value)
        }) {
            Err(StoreError::Unauthorized { .. }) if !matches!(self.auth, Auth::Ready(_)) => {
                let token = self.token(true)?;
                objects::send(what, CREDENTIALS, || {
                    build(&token).header("X-Auth-Token", &token.value)
                })
            }
            other => other,
        }
    }
}

impl ObjectStore for SwiftStore {
    fn location(&self) -> String {
        self.place.to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut all: Vec<(String, u64)> = Vec::new();
        loop {
            let marker = all.last().map(|(k, _)| k.clone()).unwrap_or_default();
            let page: Vec<Listed> = self
                .send(&format!("list {prefix}"), |t| {
                    let mut url = self.url(t, None);
                    url.query_pairs_mut()
                        .append_pair("format", "json")
                        .append_pair("prefix", prefix)
                        .append_pair("marker", &marker);
                    self.http.get(url)
                })?
                .json()
                .map_err(|e| StoreError::Http {
                    request: format!("list {prefix}"),
                    status: 200,
                    body: format!("an answer that is not a listing: {e}"),
                })?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page.into_iter().map(|o| (o.name, o.bytes)));
        }
    }

    fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        self.send(&format!("GET {key}"), |t| {
            let request = self.http.get(self.url(t, Some(key)));
            match range {
                Some((offset, length)) => request.header("Range", objects::range(offset, length)),
                None => request,
            }
        })?
        .bytes()
        .map_err(|e| StoreError::Down(e.to_string()))
    }

    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let body = Bytes::from(body);
        self.send(&format!("PUT {key}"), |t| {
            self.http.put(self.url(t, Some(key))).body(body.clone())
        })
        .map(drop)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.send(&format!("DELETE {key}"), |t| {
            self.http.delete(self.url(t, Some(key)))
        }) {
            Err(StoreError::NotFound(_)) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn bucket_exists(&self) -> Result<bool, StoreError> {
        match self.send("HEAD container", |t| self.http.head(self.url(t, None))) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(StoreError::Http { status: 403, .. }) => Err(StoreError::Unauthorized {
                status: 403,
                fix: format!(
                    "the token has no access to container `{}`: {CREDENTIALS}",
                    self.place.container
                ),
            }),
            Err(e) => Err(e),
        }
    }

    fn create_bucket(&self) -> Result<(), StoreError> {
        self.send("create container", |t| self.http.put(self.url(t, None)))
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swift_locations_are_read_as_restic_spells_them() {
        let p = SwiftPlace::parse("swift:backups:/overcloud/nightly")
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.container.as_str(), p.prefix.as_str()),
            ("backups", "overcloud/nightly")
        );
        assert_eq!(p.to_string(), "swift:backups:/overcloud/nightly");
        let p = SwiftPlace::parse("swift:backups:/").unwrap().unwrap();
        assert_eq!(p.prefix, "");
        assert!(SwiftPlace::parse("swift:backups").unwrap().is_err());
        assert!(SwiftPlace::parse("s3:x").is_none());
    }
}
