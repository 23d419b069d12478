//! Encoding functions: base64decode, base64encode, base64gzip, csvdecode, jsondecode,
//! jsonencode, textdecodebase64, textencodebase64, urlencode, yamldecode, yamlencode.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

use super::args::{string, FnResult};
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let s = |f| FuncDef::new(f, [ParamType::String]);
    let s2 = |f| FuncDef::new(f, [ParamType::String, ParamType::String]);
    ctx.declare_func("base64decode", s(hcl_fn!(base64decode)));
    ctx.declare_func("base64encode", s(hcl_fn!(base64encode)));
    ctx.declare_func("base64gzip", s(hcl_fn!(base64gzip)));
    ctx.declare_func("csvdecode", s(hcl_fn!(csvdecode)));
    ctx.declare_func("jsondecode", s(hcl_fn!(jsondecode)));
    ctx.declare_func(
        "jsonencode",
        FuncDef::new(hcl_fn!(jsonencode), [ParamType::Any]),
    );
    ctx.declare_func("textdecodebase64", s2(hcl_fn!(textdecodebase64)));
    ctx.declare_func("textencodebase64", s2(hcl_fn!(textencodebase64)));
    ctx.declare_func("urlencode", s(hcl_fn!(urlencode)));
    ctx.declare_func("yamldecode", s(hcl_fn!(yamldecode)));
    ctx.declare_func(
        "yamlencode",
        FuncDef::new(hcl_fn!(yamlencode), [ParamType::Any]),
    );
}

pub(super) fn b64(bytes: &[u8]) -> Value {
    STANDARD.encode(bytes).into()
}

fn decode_b64(s: &str) -> Result<Vec<u8>, FnError> {
    STANDARD.decode(s).map_err(FnError::Base64)
}

fn base64decode(a: FuncArgs) -> FnResult {
    String::from_utf8(decode_b64(string(&a[0])?)?)
        .map(Value::from)
        .map_err(FnError::DecodedNotUtf8)
}

fn base64encode(a: FuncArgs) -> FnResult {
    Ok(b64(string(&a[0])?.as_bytes()))
}

/// gzip framed as Packer's Go code writes it: Go's header (no name, time 0, OS "unknown"), the
/// data as one deflate block ended by a sync flush (Packer calls `Flush` before `Close`), then
/// the empty final stored block Go's `Close` adds. zlib and Go choose the same fixed-Huffman
/// encoding for short strings, so those give Packer's exact bytes; a long text may be
/// compressed differently (it still decompresses to the same).
fn base64gzip(a: FuncArgs) -> FnResult {
    let data = string(&a[0])?.as_bytes();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut deflate = flate2::Compress::new(flate2::Compression::default(), false);
    loop {
        out.reserve(data.len() / 2 + 64);
        let consumed = deflate.total_in() as usize;
        deflate
            .compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Sync)
            .map_err(|e| FnError::Gzip(std::io::Error::other(e)))?;
        // Done once all the input is in and the flush fitted in the room it had.
        if deflate.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    out.extend_from_slice(&[0x01, 0x00, 0x00, 0xff, 0xff]);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    Ok(b64(&out))
}

fn jsondecode(a: FuncArgs) -> FnResult {
    serde_json::from_str(string(&a[0])?).map_err(FnError::Json)
}

fn jsonencode(a: FuncArgs) -> FnResult {
    let json = serde_json::to_string(&a[0]).map_err(FnError::JsonEncode)?;
    // Go's encoder (and so Packer's) escapes HTML-sensitive characters and the JavaScript line
    // separators; outside strings JSON never contains them, so replacing everywhere is safe.
    Ok(json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into())
}

fn yamldecode(a: FuncArgs) -> FnResult {
    serde_yaml_ng::from_str(string(&a[0])?).map_err(FnError::Yaml)
}

fn yamlencode(a: FuncArgs) -> FnResult {
    serde_yaml_ng::to_string(&a[0])
        .map(Value::from)
        .map_err(FnError::YamlEncode)
}

fn urlencode(a: FuncArgs) -> FnResult {
    let mut out = String::new();
    for b in string(&a[0])?.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(out.into())
}

/// The text encodings kiln can convert to and from, by IANA name or alias.
#[derive(Clone, Copy)]
enum TextEncoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Latin1,
    Ascii,
}

fn text_encoding(name: &str) -> Result<TextEncoding, FnError> {
    Ok(match name.to_ascii_uppercase().replace('_', "-").as_str() {
        "UTF-8" | "UTF8" => TextEncoding::Utf8,
        "UTF-16LE" => TextEncoding::Utf16Le,
        "UTF-16BE" | "UTF-16" => TextEncoding::Utf16Be,
        "ISO-8859-1" | "LATIN1" | "ISO-IR-100" | "L1" | "CP819" => TextEncoding::Latin1,
        "US-ASCII" | "ASCII" => TextEncoding::Ascii,
        _ => return Err(FnError::UnknownEncoding(name.to_owned())),
    })
}

fn textencodebase64(a: FuncArgs) -> FnResult {
    let s = string(&a[0])?;
    let enc = text_encoding(string(&a[1])?)?;
    let unrepresentable = || FnError::Unrepresentable(string(&a[1]).unwrap_or_default().to_owned());
    let bytes: Vec<u8> = match enc {
        TextEncoding::Utf8 => s.as_bytes().to_vec(),
        TextEncoding::Utf16Le => s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        TextEncoding::Utf16Be => s.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        TextEncoding::Latin1 | TextEncoding::Ascii => {
            let limit = if matches!(enc, TextEncoding::Ascii) {
                0x7f
            } else {
                0xff
            };
            s.chars()
                .map(|c| {
                    u8::try_from(c as u32)
                        .ok()
                        .filter(|&b| u32::from(b) <= limit)
                })
                .collect::<Option<_>>()
                .ok_or_else(unrepresentable)?
        }
    };
    Ok(b64(&bytes))
}

fn textdecodebase64(a: FuncArgs) -> FnResult {
    let bytes = decode_b64(string(&a[0])?)?;
    let enc = text_encoding(string(&a[1])?)?;
    let invalid = || FnError::Undecodable(string(&a[1]).unwrap_or_default().to_owned());
    let units = |be: bool| -> Result<String, FnError> {
        if bytes.len() % 2 != 0 {
            return Err(invalid());
        }
        let u: Vec<u16> = bytes
            .chunks(2)
            .map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&u).map_err(|_| invalid())
    };
    let text = match enc {
        TextEncoding::Utf8 => String::from_utf8(bytes.clone()).map_err(|_| invalid())?,
        TextEncoding::Utf16Le => units(false)?,
        TextEncoding::Utf16Be => units(true)?,
        TextEncoding::Latin1 => bytes.iter().map(|&b| b as char).collect(),
        TextEncoding::Ascii => {
            if bytes.iter().any(|b| !b.is_ascii()) {
                return Err(invalid());
            }
            bytes.iter().map(|&b| b as char).collect()
        }
    };
    Ok(text.into())
}

/// RFC 4180 CSV: the first row names the columns, each further row becomes an object.
fn csvdecode(a: FuncArgs) -> FnResult {
    let rows = parse_csv(string(&a[0])?)?;
    let mut rows = rows.into_iter();
    let Some(header) = rows.next() else {
        return Ok(Value::Array(Vec::new()));
    };
    let mut out = Vec::new();
    for (n, row) in rows.enumerate() {
        if row.len() != header.len() {
            return Err(FnError::CsvRow {
                row: n + 2,
                fields: row.len(),
                header: header.len(),
            });
        }
        let obj: hcl::Map<String, Value> = header
            .iter()
            .cloned()
            .zip(row.into_iter().map(Value::from))
            .collect();
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

fn parse_csv(src: &str) -> Result<Vec<Vec<String>>, FnError> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = src.chars().peekable();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            c => field.push(c),
        }
    }
    if quoted {
        return Err(FnError::CsvQuote);
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, json, ok};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use hcl::Value;

    #[test]
    fn base64_family() {
        assert_eq!(ok(r#"base64encode("kiln")"#), Value::from("a2lsbg=="));
        assert_eq!(ok(r#"base64decode("a2lsbg==")"#), Value::from("kiln"));
        assert!(eval(r#"base64decode("***")"#).is_err());
        assert_eq!(
            ok(r#"textencodebase64("hé", "UTF-16LE")"#),
            Value::from("aADpAA==")
        );
        assert_eq!(
            ok(r#"textdecodebase64("aADpAA==", "UTF-16LE")"#),
            Value::from("hé")
        );
        assert!(eval(r#"textencodebase64("é", "US-ASCII")"#).is_err());
        assert!(eval(r#"textencodebase64("x", "EBCDIC-nope")"#).is_err());
        // Packer's hcl2template/function/encoding_test.go.
        assert_eq!(
            ok(r#"base64gzip("test")"#),
            Value::from("H4sIAAAAAAAA/ypJLS4BAAAA//8BAAD//wx+f9gEAAAA")
        );
        assert_eq!(
            ok(r#"base64gzip("helloworld")"#),
            Value::from("H4sIAAAAAAAA/8pIzcnJL88vykkBAAAA//8BAAD//60g6/kKAAAA")
        );
        // A long text is valid gzip of the same bytes.
        let long = "kiln ".repeat(50_000);
        let gz = ok(&format!(r#"base64gzip("{long}")"#));
        let bytes = STANDARD.decode(gz.as_str().unwrap()).unwrap();
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut back)
            .unwrap();
        assert!(back == long);
    }

    #[test]
    fn json_and_yaml_round_trip() {
        assert_eq!(
            json(r#"jsondecode("{\"a\": [1, true]}")"#),
            r#"{"a":[1,true]}"#
        );
        assert_eq!(ok(r#"jsonencode({a = "b"})"#), Value::from(r#"{"a":"b"}"#));
        assert_eq!(
            ok(r#"jsonencode("<a&b>")"#),
            Value::from(r#""\u003ca\u0026b\u003e""#)
        );
        assert_eq!(ok(r#"jsondecode(jsonencode("<&>"))"#), Value::from("<&>"));
        assert!(eval(r#"jsondecode("{")"#).is_err());
        assert_eq!(
            json(r#"yamldecode("a: [1, x]\nb: true\n")"#),
            r#"{"a":[1,"x"],"b":true}"#
        );
        assert_eq!(ok(r#"yamlencode({a = 1})"#), Value::from("a: 1\n"));
        assert!(eval(r#"yamldecode("a: [")"#).is_err());
    }

    #[test]
    fn csv_and_url() {
        assert_eq!(
            json(r#"csvdecode("name,size\nroot,\"10,5\"\nswap,2\n")"#),
            r#"[{"name":"root","size":"10,5"},{"name":"swap","size":"2"}]"#
        );
        assert!(eval(r#"csvdecode("a,b\n1\n")"#).is_err());
        assert_eq!(
            ok(r#"urlencode("a b&c/é")"#),
            Value::from("a+b%26c%2F%C3%A9")
        );
    }
}
