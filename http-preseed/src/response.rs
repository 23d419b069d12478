//! Build the response for one request: method check, status for refused paths, Content-Type
//! by extension (or a text/binary sniff for names without one, like cloud-init's `user-data`),
//! single byte-range requests (206/416), and a body streamed from the file.

use std::io::{self, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::header::{ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

use crate::report::escape;
use crate::resolve::{resolve, Refusal, Target};
use crate::Source;

const CHUNK: usize = 64 * 1024;

/// A response body: nothing, bytes in memory, or a byte span of a file read as it is sent.
#[derive(Debug)]
pub(crate) enum ServeBody {
    Bytes(Option<Bytes>),
    File {
        file: tokio::io::Take<File>,
        remaining: u64,
    },
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ServeBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ServeBody::File { file, remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let mut buf = vec![0u8; CHUNK.min(usize::try_from(*remaining).unwrap_or(CHUNK))];
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(file).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            // The file shrank while being served: end with an error rather
                            // than send fewer bytes than Content-Length promised, silently.
                            return Poll::Ready(Some(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "file shrank while being served",
                            ))));
                        }
                        *remaining -= n as u64;
                        buf.truncate(n);
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Bytes(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            ServeBody::File { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ServeBody::File { remaining, .. } => SizeHint::with_exact(*remaining),
        }
    }
}

/// The number of body bytes a response will carry, for the request log.
pub(crate) fn body_len(resp: &Response<ServeBody>) -> u64 {
    resp.body().size_hint().exact().unwrap_or(0)
}

/// Answer one request.
pub(crate) async fn respond<B>(source: &Source, req: &Request<B>) -> Response<ServeBody> {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
    };
    let path = req.uri().path();
    let range = req.headers().get(RANGE).and_then(|v| v.to_str().ok());
    match resolve(source, path).await {
        Err(Refusal::Forbidden) => plain(StatusCode::FORBIDDEN),
        Err(Refusal::NotFound) => plain(StatusCode::NOT_FOUND),
        Ok(Target::Memory(text)) => {
            let data = Bytes::copy_from_slice(text.as_bytes());
            let ctype = content_type(path, &data);
            let len = data.len() as u64;
            ranged(len, range, ctype, head, |start, n| async move {
                // Both bounds come from `parse_range` against `len`, so they fit.
                let (s, e) = (start as usize, (start + n) as usize);
                Ok(ServeBody::Bytes(Some(data.slice(s..e))))
            })
            .await
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR))
        }
        Ok(Target::File(real)) => match serve_file(&real, path, range, head).await {
            Ok(resp) => resp,
            Err(e) => {
                // The file's name comes from the (percent-decoded) request path.
                let shown = escape(&real.display().to_string());
                tracing::warn!("HTTP server: reading {shown}: {e}");
                plain(StatusCode::INTERNAL_SERVER_ERROR)
            }
        },
    }
}

async fn serve_file(
    real: &std::path::Path,
    path: &str,
    range: Option<&str>,
    head: bool,
) -> io::Result<Response<ServeBody>> {
    let mut file = File::open(real).await?;
    let len = file.metadata().await?.len();
    let mut sniff = vec![0u8; 512.min(usize::try_from(len).unwrap_or(512))];
    file.read_exact(&mut sniff).await?;
    let ctype = content_type(path, &sniff);
    ranged(len, range, ctype, head, |start, n| async move {
        file.seek(SeekFrom::Start(start)).await?;
        Ok(ServeBody::File {
            file: file.take(n),
            remaining: n,
        })
    })
    .await
}

/// Shared by files and memory: pick 200/206/416 and set the headers; `body(start, len)`
/// produces the body for the chosen span (not called for HEAD or 416).
async fn ranged<F, Fut>(
    len: u64,
    range: Option<&str>,
    ctype: &'static str,
    head: bool,
    body: F,
) -> io::Result<Response<ServeBody>>
where
    F: FnOnce(u64, u64) -> Fut,
    Fut: std::future::Future<Output = io::Result<ServeBody>>,
{
    let (status, start, n) = match parse_range(range, len) {
        Span::Whole => (StatusCode::OK, 0, len),
        Span::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Span::Unsatisfiable => {
            let mut resp = plain(StatusCode::RANGE_NOT_SATISFIABLE);
            insert(&mut resp, CONTENT_RANGE, format!("bytes */{len}"));
            return Ok(resp);
        }
    };
    let b = if head {
        ServeBody::Bytes(None)
    } else {
        body(start, n).await?
    };
    let mut resp = Response::new(b);
    *resp.status_mut() = status;
    insert(&mut resp, CONTENT_TYPE, ctype.to_string());
    insert(&mut resp, CONTENT_LENGTH, n.to_string());
    insert(&mut resp, ACCEPT_RANGES, "bytes".to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        insert(
            &mut resp,
            CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", start + n - 1),
        );
    }
    Ok(resp)
}

fn insert(resp: &mut Response<ServeBody>, name: hyper::header::HeaderName, value: String) {
    // Values built here are ASCII digits and fixed strings, always valid.
    if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

fn plain(status: StatusCode) -> Response<ServeBody> {
    let text = format!("{status}\n");
    let mut resp = Response::new(ServeBody::Bytes(Some(Bytes::from(text))));
    *resp.status_mut() = status;
    insert(
        &mut resp,
        CONTENT_TYPE,
        "text/plain; charset=utf-8".to_string(),
    );
    resp
}

/// The part of the content a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Span {
    Whole,
    /// Inclusive first and last byte.
    Part(u64, u64),
    Unsatisfiable,
}

/// Only one `bytes=` range is honoured; several ranges or a malformed header are answered
/// with the whole content, which RFC 9110 allows for a server that ignores `Range`.
fn parse_range(header: Option<&str>, len: u64) -> Span {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Span::Whole;
    };
    if spec.contains(',') {
        return Span::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Span::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(suffix) = b.parse::<u64>() else {
            return Span::Whole;
        };
        if suffix == 0 || len == 0 {
            return Span::Unsatisfiable;
        }
        return Span::Part(len.saturating_sub(suffix), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return Span::Whole;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return Span::Whole,
        }
    };
    if start >= len {
        return Span::Unsatisfiable;
    }
    Span::Part(start, end.min(len - 1))
}

/// Content-Type by extension; names without a known one are sniffed like Go's file server
/// does, so `user-data` and `meta-data` arrive as text.
fn content_type(path: &str, head: &[u8]) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "cfg" | "ks" | "seed" | "preseed" | "txt" | "conf" | "sh" | "ps1" | "bat" | "cmd"
        | "ipxe" | "pub" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "xml" => "text/xml; charset=utf-8",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "iso" => "application/x-iso9660-image",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "zip" => "application/zip",
        "img" | "qcow2" | "bin" => "application/octet-stream",
        _ if looks_like_text(head) => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // The sniff window may cut a multi-byte character in two.
        Err(e) => e.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Span::Whole);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Span::Part(0, 3));
        assert_eq!(parse_range(Some("bytes=4-"), 10), Span::Part(4, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Span::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Span::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Span::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Span::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Span::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Span::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Span::Whole);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Span::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), Span::Whole);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Span::Whole);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("/preseed.cfg", b""),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type("/Autounattend.XML", b""),
            "text/xml; charset=utf-8"
        );
        assert_eq!(
            content_type("/user-data", b"#cloud-config\n"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type("/blob", b"\x7fELF\0\0"),
            "application/octet-stream"
        );
        assert_eq!(content_type("/a.yaml", b""), "application/yaml");
    }
}
