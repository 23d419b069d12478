//! A small AWS client for the services kiln calls (Secrets Manager now, S3 uploads later):
//! the SDKs' configuration chain ([`credentials`]), Signature Version 4 ([`sigv4`]), endpoint
//! resolution with the SDKs' `AWS_ENDPOINT_URL_<SERVICE>` / `AWS_ENDPOINT_URL` overrides, and
//! calls in the JSON 1.1 protocol over kiln's blocking HTTP agent. Error messages name the
//! service, operation and AWS error code, never a secret key or session token.

pub mod credentials;
pub mod sigv4;

use std::io::Read as _;

use credentials::{Credentials, CredentialsError, Env, Profile};

/// The most of an AWS answer kiln reads (secrets are at most 64 KiB).
const MAX_RESPONSE: u64 = 4 << 20;

/// How a service is named in signatures, endpoints, environment variables and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The signing name and endpoint prefix (`secretsmanager`).
    pub id: &'static str,
    /// The suffix of `AWS_ENDPOINT_URL_<…>` (`SECRETS_MANAGER`).
    pub env_id: &'static str,
    /// The name the SDKs use in errors (`Secrets Manager`).
    pub display: &'static str,
}

/// AWS Secrets Manager.
pub const SECRETS_MANAGER: Service = Service {
    id: "secretsmanager",
    env_id: "SECRETS_MANAGER",
    display: "Secrets Manager",
};

/// Why an AWS call failed.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// No usable credentials or profile.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// No region anywhere in the chain.
    #[error(
        "operation error {0}: an AWS region is required, but was not found: set AWS_REGION \
         (or AWS_DEFAULT_REGION, or region in the profile)"
    )]
    NoRegion(&'static str),
    /// The endpoint is not a URL.
    #[error("invalid AWS endpoint URL {0:?}")]
    Endpoint(String),
    /// The request could not be made or its answer read.
    #[error("operation error {service}: {operation}, request to {url} failed")]
    Transport {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// The endpoint.
        url: String,
        /// Why.
        #[source]
        source: ureq::Error,
    },
    /// AWS answered with an error.
    #[error(
        "operation error {service}: {operation}, https response error StatusCode: {status}, \
         RequestID: {request_id}, {code}: {message}"
    )]
    Api {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// AWS's request id, for support.
        request_id: String,
        /// The error code (`ResourceNotFoundException`).
        code: String,
        /// AWS's explanation.
        message: String,
    },
    /// A success whose body is not JSON.
    #[error("operation error {service}: {operation}, the answer is not JSON")]
    Json {
        /// The service.
        service: &'static str,
        /// The operation.
        operation: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The endpoint of `service`: `AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, the profile's
/// `endpoint_url`, else AWS's own for the region.
pub fn endpoint(env: Env<'_>, service: Service) -> Result<String, AwsError> {
    let profile = Profile::load(env)?;
    resolve_endpoint(env, &profile, service)
}

fn resolve_endpoint(env: Env<'_>, profile: &Profile, service: Service) -> Result<String, AwsError> {
    let set = env(&format!("AWS_ENDPOINT_URL_{}", service.env_id))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| profile.get("endpoint_url").map(str::to_owned));
    if let Some(url) = set {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let region = credentials::region(env, profile).ok_or(AwsError::NoRegion(service.display))?;
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    Ok(format!("https://{}.{region}.{domain}", service.id))
}

/// A configured client of one service.
#[derive(Debug)]
pub struct Client {
    service: Service,
    region: String,
    endpoint: String,
    credentials: Credentials,
}

impl Client {
    /// A client of `service` configured from `env` and the shared files.
    pub fn new(env: Env<'_>, service: Service) -> Result<Client, AwsError> {
        let profile = Profile::load(env)?;
        let endpoint = resolve_endpoint(env, &profile, service)?;
        // A region is signed even with an endpoint override; the SDKs insist on one too.
        let region =
            credentials::region(env, &profile).ok_or(AwsError::NoRegion(service.display))?;
        let credentials = credentials::credentials(env, &profile)?;
        Ok(Client {
            service,
            region,
            endpoint,
            credentials,
        })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `operation` in the JSON 1.1 protocol (`X-Amz-Target: <service>.<operation>`).
    pub fn call_json(
        &self,
        agent: &ureq::Agent,
        operation: &'static str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, AwsError> {
        let service = self.service.display;
        let url = format!("{}/", self.endpoint);
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|_| AwsError::Endpoint(self.endpoint.clone()))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or_default().to_owned())
            .ok_or_else(|| AwsError::Endpoint(self.endpoint.clone()))?;
        let body = input.to_string();
        let target = format!("{}.{operation}", self.service.id);
        let content_type = "application/x-amz-json-1.1";
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                host: &host,
                path: uri.path(),
                query: uri.query().unwrap_or(""),
                headers: &[("Content-Type", content_type), ("X-Amz-Target", &target)],
                payload: body.as_bytes(),
            },
            &self.credentials,
            sigv4::Scope {
                region: &self.region,
                service: self.service.id,
            },
            chrono::Utc::now(),
        );
        let transport = |source| AwsError::Transport {
            service,
            operation,
            url: url.clone(),
            source,
        };
        let mut request = agent
            .post(&url)
            .header("Content-Type", content_type)
            .header("X-Amz-Target", &target);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let mut response = request.send(body.as_bytes()).map_err(transport)?;
        let status = response.status().as_u16();
        let header = |name: &str| crate::http::header(&response, name);
        let request_id = header("x-amzn-requestid").unwrap_or_default();
        let error_type = header("x-amzn-errortype");
        let mut text = String::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE)
            .read_to_string(&mut text)
            .map_err(|e| transport(ureq::Error::Io(e)))?;
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&text);
        if status == 200 {
            return parsed.map_err(|source| AwsError::Json {
                service,
                operation,
                source,
            });
        }
        let parsed = parsed.unwrap_or_default();
        let field = |k: &str| parsed.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        // `__type` may be `namespace#Code`; the header may carry `Code:http://…`.
        let code = field("__type")
            .or(error_type)
            .map(|c| {
                let c = c.rsplit('#').next().unwrap_or_default();
                c.split(':').next().unwrap_or_default().to_owned()
            })
            .unwrap_or_else(|| "UnknownError".to_owned());
        let message = field("message")
            .or_else(|| field("Message"))
            .unwrap_or_default();
        Err(AwsError::Api {
            service,
            operation,
            status,
            request_id,
            code,
            message,
        })
    }
}

/// Helpers for tests of code that reads the environment through a lookup function.
#[cfg(test)]
pub(crate) mod testing {
    /// An environment holding only `pairs` (an empty value counts as unset, as the SDKs do).
    pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned().filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use testing::env_of;

    #[test]
    fn endpoints_follow_the_sdk_overrides() {
        let e = |pairs| endpoint(&env_of(pairs), SECRETS_MANAGER);
        assert_eq!(
            e(&[("HOME", "/nonexistent"), ("AWS_REGION", "eu-west-3")]).unwrap(),
            "https://secretsmanager.eu-west-3.amazonaws.com"
        );
        assert_eq!(
            e(&[("HOME", "/nonexistent"), ("AWS_REGION", "cn-north-1")]).unwrap(),
            "https://secretsmanager.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            e(&[
                ("HOME", "/nonexistent"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9/"),
            ])
            .unwrap(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            e(&[
                ("HOME", "/nonexistent"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:8"),
            ])
            .unwrap(),
            "http://127.0.0.1:8"
        );
        assert!(matches!(
            e(&[("HOME", "/nonexistent")]),
            Err(AwsError::NoRegion(_))
        ));
    }
}
