//! A repository in an S3 bucket (AWS, Ceph RGW, MinIO, OpenStack Swift's `s3api`), spelled as
//! restic spells it: `s3:https://host:port/bucket/prefix`, or `s3:host/bucket/prefix` for https.
//! Requests are signed with SigV4 by `rusty-s3` (a sans-IO signer) and sent by the HTTP client
//! the REST backend already uses.
//!
//! Credentials, as the AWS tools and restic read them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE` (or
//! `default`) of `AWS_SHARED_CREDENTIALS_FILE` (or `~/.aws/credentials`). The region is
//! `AWS_DEFAULT_REGION` or `AWS_REGION`, else `us-east-1`. Buckets are addressed by path except
//! on `*.amazonaws.com`; `COFFER_S3_BUCKET_LOOKUP=path|dns` decides otherwise (restic's
//! `s3.bucket-lookup`).

use std::time::Duration;

use bytes::Bytes;
use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::objects::{self, ObjectStore, StoreError};

/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(3600);

/// Where the credentials come from, said when they are refused.
const CREDENTIALS: &str = "give the access key in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                           or a profile of ~/.aws/credentials (AWS_PROFILE, \
                           AWS_SHARED_CREDENTIALS_FILE)";

/// An S3 repository's address: endpoint, bucket and prefix (no secret).
#[derive(Clone)]
pub struct S3Place {
    /// `http(s)://host:port`.
    pub endpoint: url::Url,
    /// The bucket.
    pub bucket: String,
    /// The key prefix in it (may be empty).
    pub prefix: String,
}

impl std::fmt::Debug for S3Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for S3Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = self.endpoint.as_str().trim_end_matches('/');
        write!(f, "s3:{endpoint}/{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl S3Place {
    /// Parse `s3:…`; `None` when `spec` is not one. Credentials in the URL are refused.
    pub fn parse(spec: &str) -> Option<Result<Self, String>> {
        let rest = spec.strip_prefix("s3:")?;
        let with_scheme = if rest.starts_with("http://") || rest.starts_with("https://") {
            rest.to_string()
        } else {
            format!("https://{rest}")
        };
        Some(match url::Url::parse(&with_scheme) {
            Err(e) => Err(format!("`{spec}` is not an S3 location: {e}")),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => Err(format!(
                "`{spec}` holds credentials: give them in AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY instead"
            )),
            Ok(u) => {
                let path = u.path().trim_matches('/').to_string();
                let (bucket, prefix) = path.split_once('/').unwrap_or((&path, ""));
                if bucket.is_empty() {
                    return Some(Err(format!(
                        "`{spec}` names no bucket: write s3:https://host:port/bucket[/prefix]"
                    )));
                }
                let mut endpoint = u.clone();
                endpoint.set_path("");
                Ok(Self {
                    endpoint,
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                })
            }
        })
    }

    /// The store, with credentials and region from the environment.
    pub(crate) fn open(&self) -> Result<S3Store, String> {
        let credentials = credentials()?;
        let region = std::env::var("AWS_DEFAULT_REGION")
            .or_else(|_| std::env::var("AWS_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        let style = match std::env::var("COFFER_S3_BUCKET_LOOKUP").as_deref() {
            Ok("path") => UrlStyle::Path,
            Ok("dns") => UrlStyle::VirtualHost,
            Ok(other) => {
                return Err(format!(
                    "COFFER_S3_BUCKET_LOOKUP is `{other}`: it is `path` or `dns`"
                ));
            }
            Err(_) => match self.endpoint.host_str() {
                Some(h) if h.ends_with(".amazonaws.com") => UrlStyle::VirtualHost,
                _ => UrlStyle::Path,
            },
        };
        let bucket = Bucket::new(self.endpoint.clone(), style, self.bucket.clone(), region)
            .map_err(|e| format!("{self}: {e}"))?;
        Ok(S3Store {
            place: self.clone(),
            bucket,
            credentials,
            http: objects::client(),
        })
    }
}

/// The access key from the environment, else from the shared credentials file.
fn credentials() -> Result<Credentials, String> {
    if let Some(c) = Credentials::from_env() {
        return Ok(c);
    }
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".aws/credentials")));
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let text = file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .ok_or_else(|| format!("no S3 credentials: {CREDENTIALS}"))?;
    let values = profile_values(&text, &profile);
    let get = |k: &str| {
        values
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(key), Some(secret)) => Ok(match get("aws_session_token") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        }),
        _ => Err(format!(
            "no S3 credentials for profile `{profile}` in {}: {CREDENTIALS}",
            file.map(|f| f.display().to_string()).unwrap_or_default()
        )),
    }
}

/// The `key = value` lines of the INI section `[profile]`.
fn profile_values(text: &str, profile: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut values = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == profile;
        } else if inside
            && !line.starts_with(['#', ';'])
            && let Some((k, v)) = line.split_once('=')
        {
            values.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    values
}

/// An S3 bucket reached with its credentials.
pub(crate) struct S3Store {
    place: S3Place,
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::blocking::Client,
}

impl ObjectStore for S3Store {
    fn location(&self) -> String {
        self.place.to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let text = objects::send(&format!("list {prefix}"), CREDENTIALS, || {
                self.http.get(url.clone())
            })?
            .text()
            .map_err(|e| StoreError::Down(e.to_string()))?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| StoreError::Http {
                request: format!("list {prefix}"),
                status: 200,
                body: format!("an answer that is not a listing: {e}"),
            })?;
            all.extend(
                page.contents
                    .into_iter()
                    .map(|c| (c.key, c.size.unwrap_or(0))),
            );
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    fn get(&self, key: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let response = objects::send(&format!("GET {key}"), CREDENTIALS, || {
            let request = self.http.get(url.clone());
            match range {
                Some((offset, length)) => request.header("Range", objects::range(offset, length)),
                None => request,
            }
        })?;
        response
            .bytes()
            .map_err(|e| StoreError::Down(e.to_string()))
    }

    fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let body = Bytes::from(body);
        objects::send(&format!("PUT {key}"), CREDENTIALS, || {
            self.http.put(url.clone()).body(body.clone())
        })
        .map(drop)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        match objects::send(&format!("DELETE {key}"), CREDENTIALS, || {
            self.http.delete(url.clone())
        }) {
            Err(StoreError::NotFound(_)) | Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn bucket_exists(&self) -> Result<bool, StoreError> {
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(SIGNED_FOR);
        match objects::send("HEAD bucket", CREDENTIALS, || self.http.head(url.clone())) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            // A HEAD has no body to say why: a 403 is the credentials (or their rights).
            Err(StoreError::Http { status: 403, .. }) => Err(StoreError::Unauthorized {
                status: 403,
                fix: CREDENTIALS.into(),
            }),
            Err(e) => Err(e),
        }
    }

    fn create_bucket(&self) -> Result<(), StoreError> {
        let action = self.bucket.create_bucket(&self.credentials);
        let url = action.sign(SIGNED_FOR);
        let body = action.body();
        match objects::send("create bucket", CREDENTIALS, || {
            self.http.put(url.clone()).body(body.clone())
        }) {
            // A retried request whose first try went through.
            Err(StoreError::Http {
                status: 409, body, ..
            }) if body.contains("BucketAlreadyOwnedByYou") => Ok(()),
            other => other.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_are_read_as_restic_spells_them() {
        let p = S3Place::parse("s3:http://10.0.0.5:8080/coffer/overcloud/nightly")
            .unwrap()
            .unwrap();
        assert_eq!(p.endpoint.as_str(), "http://10.0.0.5:8080/");
        assert_eq!(
            (p.bucket.as_str(), p.prefix.as_str()),
            ("coffer", "overcloud/nightly")
        );
        assert_eq!(
            p.to_string(),
            "s3:http://10.0.0.5:8080/coffer/overcloud/nightly"
        );
        let p = S3Place::parse("s3:s3.amazonaws.com/bucket")
            .unwrap()
            .unwrap();
        assert_eq!(p.endpoint.as_str(), "https://s3.amazonaws.com/");
        assert_eq!((p.bucket.as_str(), p.prefix.as_str()), ("bucket", ""));
        assert!(S3Place::parse("s3:http://host:9000/").unwrap().is_err());
        assert!(S3Place::parse("s3:https://k:s@host/b").unwrap().is_err());
        assert!(S3Place::parse("rest:http://host/").is_none());
    }

    #[test]
    fn a_profile_is_read_from_the_credentials_file() {
        let text = "[default]\naws_access_key_id = A\n[backup]\n# comment\n\
                    aws_access_key_id = B\naws_secret_access_key=S\n";
        assert_eq!(
            profile_values(text, "backup"),
            [
                ("aws_access_key_id".into(), "B".into()),
                ("aws_secret_access_key".into(), "S".into())
            ]
        );
    }
}
