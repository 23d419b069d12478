//! AWS Signature Version 4 for requests signed in the `Authorization` header: the canonical
//! request, the string to sign and the derived signing key, as AWS's "Create a signed AWS API
//! request" guide lays them out. HMAC-SHA256 is written here on `sha2` (a dozen lines) rather
//! than pulled in as another crate. The caller sends the headers [`sign`] returns along with the
//! ones it signed.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::credentials::Credentials;

/// One request to sign, as it goes on the wire.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The `Host` header: the endpoint's host, with `:port` when it is not the scheme's default.
    pub host: &'a str,
    /// The path as sent (already percent-encoded), starting with `/`.
    pub path: &'a str,
    /// The query string as sent, without `?` (empty for none).
    pub query: &'a str,
    /// Further headers to sign (`Content-Type`, `X-Amz-Target`, …); `Host`, `X-Amz-Date` and
    /// `X-Amz-Security-Token` are added by [`sign`].
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub payload: &'a [u8],
}

/// Where and for what a request is signed.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The region (`us-east-1`).
    pub region: &'a str,
    /// The service's signing name (`secretsmanager`, `s3`).
    pub service: &'a str,
}

/// The headers to add to `req` so that AWS accepts it at `time`: `X-Amz-Date`,
/// `X-Amz-Security-Token` (with temporary credentials) and `Authorization`.
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials,
    scope: Scope<'_>,
    time: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let amz_date = time.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let mut added = vec![("X-Amz-Date", amz_date.clone())];
    if let Some(token) = &creds.session_token {
        added.push(("X-Amz-Security-Token", token.clone()));
    }

    let mut headers: Vec<(String, String)> = vec![("host".into(), req.host.trim().into())];
    headers.extend(
        added
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
    );
    headers.extend(
        req.headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v))),
    );
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();

    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path, scope.service),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        hex(&Sha256::digest(req.payload)),
    );
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let key = signing_key(&creds.secret_access_key, date, scope);
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    added.push((
        "Authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            creds.access_key_id
        ),
    ));
    added
}

fn signing_key(secret: &str, date: &str, scope: Scope<'_>) -> [u8; 32] {
    let k = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, scope.region.as_bytes());
    let k = hmac_sha256(&k, scope.service.as_bytes());
    hmac_sha256(&k, b"aws4_request")
}

/// HMAC (RFC 2104) over SHA-256.
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut padded = [0u8; BLOCK];
    if key.len() > BLOCK {
        padded[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        padded[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(padded.map(|b| b ^ 0x36))
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(padded.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Header values are trimmed and inner runs of spaces collapsed to one.
fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every service but S3 signs the path encoded a second time; S3 signs it as sent.
fn canonical_uri(path: &str, service: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    if service == "s3" {
        return path.to_owned();
    }
    path.split('/')
        .map(|seg| uri_encode(seg.as_bytes()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The query's pairs, each decoded and encoded again the one way AWS expects, sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986's unreserved characters, in upper-case hex.
pub fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex_pair) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials and instant of AWS's SigV4 test suite (`aws-sig-v4-test-suite`).
    fn suite_creds() -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    fn suite_time() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-08-30T12:36:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const SUITE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };

    fn authorization(method: &str, query: &str) -> String {
        let req = Request {
            method,
            host: "example.amazonaws.com",
            path: "/",
            query,
            headers: &[],
            payload: b"",
        };
        let headers = sign(&req, &suite_creds(), SUITE, suite_time());
        assert_eq!(headers[0], ("X-Amz-Date", "20150830T123600Z".to_owned()));
        headers
            .into_iter()
            .find(|(k, _)| *k == "Authorization")
            .unwrap()
            .1
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn get_vanilla() {
        assert_eq!(
            authorization("GET", ""),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert!(
            authorization("GET", "Param2=value2&Param1=value1").ends_with(
                "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_vanilla() {
        assert!(authorization("POST", "").ends_with(
            "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        ));
    }

    #[test]
    fn a_session_token_is_sent_and_signed() {
        let mut creds = suite_creds();
        creds.session_token = Some("TOKEN".into());
        let req = Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query: "",
            headers: &[],
            payload: b"",
        };
        let headers = sign(&req, &creds, SUITE, suite_time());
        assert!(headers.contains(&("X-Amz-Security-Token", "TOKEN".to_owned())));
        let auth = &headers
            .iter()
            .find(|(k, _)| *k == "Authorization")
            .unwrap()
            .1;
        assert!(
            auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"),
            "{auth}"
        );
        assert!(!auth.contains(&creds.secret_access_key));
    }

    #[test]
    fn paths_are_encoded_again_except_for_s3() {
        assert_eq!(canonical_uri("/a%20b/c", "service"), "/a%2520b/c");
        assert_eq!(canonical_uri("/a%20b/c", "s3"), "/a%20b/c");
        assert_eq!(canonical_uri("", "service"), "/");
    }

    #[test]
    fn query_values_are_normalised() {
        assert_eq!(canonical_query("b=x+y&a=%7e&a=1"), "a=1&a=~&b=x%20y");
    }
}
