//! Hash and crypto functions: bcrypt, md5, sha1, sha256, sha512, uuidv4, uuidv5, rsadecrypt, and
//! Terraform's base64sha256/base64sha512 and file hash functions, which some templates use.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::args::{integer, string, FnResult};
use super::encoding::b64;
use super::filesystem::open_regular;
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let s = |f| FuncDef::new(f, [ParamType::String]);
    ctx.declare_func(
        "bcrypt",
        FuncDef::builder()
            .param(ParamType::String)
            .variadic_param(ParamType::Number)
            .build(hcl_fn!(bcrypt)),
    );
    ctx.declare_func("md5", s(hcl_fn!(md5)));
    ctx.declare_func("sha1", s(hcl_fn!(sha1)));
    ctx.declare_func("sha256", s(hcl_fn!(sha256)));
    ctx.declare_func("sha512", s(hcl_fn!(sha512)));
    ctx.declare_func("base64sha256", s(hcl_fn!(base64sha256)));
    ctx.declare_func("base64sha512", s(hcl_fn!(base64sha512)));
    ctx.declare_func("filemd5", s(hcl_fn!(filemd5)));
    ctx.declare_func("filesha1", s(hcl_fn!(filesha1)));
    ctx.declare_func("filesha256", s(hcl_fn!(filesha256)));
    ctx.declare_func("filesha512", s(hcl_fn!(filesha512)));
    ctx.declare_func("filebase64sha256", s(hcl_fn!(filebase64sha256)));
    ctx.declare_func("filebase64sha512", s(hcl_fn!(filebase64sha512)));
    ctx.declare_func("uuidv4", FuncDef::new(hcl_fn!(uuidv4), []));
    ctx.declare_func(
        "uuidv5",
        FuncDef::new(hcl_fn!(uuidv5), [ParamType::String, ParamType::String]),
    );
    ctx.declare_func(
        "rsadecrypt",
        FuncDef::new(hcl_fn!(rsadecrypt), [ParamType::String, ParamType::String]),
    );
}

/// Packer's default (Go's `bcrypt.DefaultCost`); the bcrypt crate defaults to 12.
const DEFAULT_BCRYPT_COST: i64 = 10;

fn hex<D: Digest>(data: &[u8]) -> Value {
    hex_of(&D::digest(data))
}

fn md5(a: FuncArgs) -> FnResult {
    Ok(hex::<Md5>(string(&a[0])?.as_bytes()))
}

fn sha1(a: FuncArgs) -> FnResult {
    Ok(hex::<Sha1>(string(&a[0])?.as_bytes()))
}

fn sha256(a: FuncArgs) -> FnResult {
    Ok(hex::<Sha256>(string(&a[0])?.as_bytes()))
}

fn sha512(a: FuncArgs) -> FnResult {
    Ok(hex::<Sha512>(string(&a[0])?.as_bytes()))
}

fn base64sha256(a: FuncArgs) -> FnResult {
    Ok(b64(&Sha256::digest(string(&a[0])?.as_bytes())))
}

fn base64sha512(a: FuncArgs) -> FnResult {
    Ok(b64(&Sha512::digest(string(&a[0])?.as_bytes())))
}

/// The digest of a regular file, read in pieces: a hashed file (an ISO) may be far larger than
/// anything kiln holds in memory.
fn file_digest<D: Digest>(a: &FuncArgs) -> Result<sha2::digest::Output<D>, FnError> {
    use std::io::Read;

    let (mut f, full, _) = open_regular(string(&a[0])?)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(hasher.finalize()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(FnError::Read { path: full, source }),
        }
    }
}

fn hex_of(digest: &[u8]) -> Value {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into()
}

fn filemd5(a: FuncArgs) -> FnResult {
    Ok(hex_of(&file_digest::<Md5>(&a)?))
}

fn filesha1(a: FuncArgs) -> FnResult {
    Ok(hex_of(&file_digest::<Sha1>(&a)?))
}

fn filesha256(a: FuncArgs) -> FnResult {
    Ok(hex_of(&file_digest::<Sha256>(&a)?))
}

fn filesha512(a: FuncArgs) -> FnResult {
    Ok(hex_of(&file_digest::<Sha512>(&a)?))
}

fn filebase64sha256(a: FuncArgs) -> FnResult {
    Ok(b64(&file_digest::<Sha256>(&a)?))
}

fn filebase64sha512(a: FuncArgs) -> FnResult {
    Ok(b64(&file_digest::<Sha512>(&a)?))
}

fn bcrypt(a: FuncArgs) -> FnResult {
    let cost = match a.get(1) {
        Some(c) => integer(c)?,
        None => DEFAULT_BCRYPT_COST,
    };
    if a.len() > 2 {
        return Err(FnError::Arity(
            "bcrypt() takes a string and an optional cost",
        ));
    }
    let cost = u32::try_from(cost)
        .ok()
        .filter(|c| (4..=31).contains(c))
        .ok_or(FnError::BcryptCost(cost))?;
    // Packer's bcrypt hashes carry the `$2a$` prefix.
    bcrypt::hash_with_result(string(&a[0])?, cost)
        .map(|h| h.format_for_version(bcrypt::Version::TwoA).into())
        .map_err(FnError::Bcrypt)
}

fn uuidv4(_: FuncArgs) -> FnResult {
    Ok(uuid::Uuid::new_v4().to_string().into())
}

fn uuidv5(a: FuncArgs) -> FnResult {
    let namespace = match string(&a[0])? {
        "dns" => uuid::Uuid::NAMESPACE_DNS,
        "url" => uuid::Uuid::NAMESPACE_URL,
        "oid" => uuid::Uuid::NAMESPACE_OID,
        "x500" => uuid::Uuid::NAMESPACE_X500,
        other => uuid::Uuid::parse_str(other).map_err(|source| FnError::UuidNamespace {
            got: other.to_owned(),
            source,
        })?,
    };
    Ok(uuid::Uuid::new_v5(&namespace, string(&a[1])?.as_bytes())
        .to_string()
        .into())
}

fn rsadecrypt(_: FuncArgs) -> FnResult {
    Err(FnError::Unsupported("rsadecrypt"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, ok};
    use hcl::Value;

    #[test]
    fn hashes() {
        assert_eq!(
            ok(r#"md5("kiln")"#),
            Value::from("9e8287435ae73a052c9459e215e46a28")
        );
        assert_eq!(
            ok(r#"sha1("")"#),
            Value::from("da39a3ee5e6b4b0d3255bfef95601890afd80709")
        );
        assert_eq!(
            ok(r#"sha256("")"#),
            Value::from("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(ok(r#"length(sha512("x"))"#), Value::from(128));
        assert_eq!(
            ok(r#"base64sha256("")"#),
            Value::from("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        );
    }

    #[test]
    fn bcrypt_hash_verifies() {
        let h = ok(r#"bcrypt("s3cret", 4)"#);
        let h = h.as_str().unwrap();
        assert!(h.starts_with("$2a$04$"), "{h}");
        assert!(bcrypt::verify("s3cret", h).unwrap());
        assert!(eval(r#"bcrypt("x", 2)"#).is_err());
        let default = ok(r#"bcrypt("x")"#);
        assert!(
            default.as_str().unwrap().starts_with("$2a$10$"),
            "{default}"
        );
    }

    #[test]
    fn uuids() {
        assert_eq!(ok("length(uuidv4())"), Value::from(36));
        assert_eq!(
            ok(r#"uuidv5("dns", "example.com")"#),
            Value::from("cfbff0d1-9375-5685-968c-48ce8b15ae17")
        );
        assert!(eval(r#"uuidv5("nope", "x")"#).is_err());
    }
}
