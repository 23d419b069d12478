//! The one HTTP client configuration kiln uses for every request it makes (downloads, secret
//! stores, AWS APIs): ureq over rustls with the platform's CA store, HTTP error statuses as
//! ordinary responses (callers read the body of a 4xx for its message), and a connect timeout so
//! an unreachable host fails instead of hanging a build.

use std::sync::Arc;
use std::time::Duration;

/// A blocking HTTP agent; `timeout` bounds the whole of each request when set (a download has no
/// such bound: it may take hours), the connection always.
pub fn agent(timeout: Option<Duration>) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        // The platform's CA store, so mirrors behind an internal CA work as they do for curl.
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(timeout)
        .build()
        .new_agent()
}

/// The value of header `name` of `response`, when it is there and is text.
pub fn header<B>(response: &ureq::http::Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
