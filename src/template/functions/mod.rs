//! Packer's HCL2 function library on top of hcl-rs: `register` declares every function in an
//! evaluation context and `evaluate` evaluates an expression with it, giving `try`, `can` and
//! `convert` the lazy argument handling hcl-rs cannot express (it evaluates call arguments
//! eagerly). Functions are grouped by family in the sibling files, as in Packer's documentation.
//! Variables, locals and `path.*` are declared by the template loader, not here.

/// Adapts a function of the library (`fn(FuncArgs) -> FnResult`) to hcl-rs's function type,
/// which wants its errors as strings: a closure that captures nothing coerces to hcl-rs's `fn`
/// pointer, so the conversion happens here, at registration, and nowhere else.
macro_rules! hcl_fn {
    ($f:path) => {
        |args| $f(args).map_err(|e| e.to_string())
    };
}

mod collection;
mod contextual;
mod conversion;
mod crypto;
mod datetime;
mod encoding;
mod filesystem;
mod ipnet;
mod numeric;
mod operators;
mod secrets;
mod string;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, FuncCall, ObjectKey, TemplateExpr};
use hcl::template::{Element, Template};
use hcl::Value;

/// Every function Packer's HCL2 templates can call (Packer 1.16), by name. Used by tests and by
/// `kiln console` completion; [`register`] aims to declare all of them.
pub const PACKER_FUNCTIONS: &[&str] = &[
    "abs",
    "abspath",
    "alltrue",
    "anytrue",
    "aws_secretsmanager",
    "aws_secretsmanager_raw",
    "base64decode",
    "base64encode",
    "base64gzip",
    "basename",
    "bcrypt",
    "can",
    "ceil",
    "chomp",
    "chunklist",
    "cidrhost",
    "cidrnetmask",
    "cidrsubnet",
    "cidrsubnets",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "consul_key",
    "contains",
    "convert",
    "csvdecode",
    "dirname",
    "distinct",
    "element",
    "endswith",
    "env",
    "file",
    "filebase64",
    "fileexists",
    "fileset",
    "flatten",
    "floor",
    "format",
    "formatdate",
    "formatlist",
    "indent",
    "index",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "legacy_isotime",
    "legacy_strftime",
    "length",
    "log",
    "lookup",
    "lower",
    "max",
    "md5",
    "merge",
    "min",
    "parseint",
    "pathexpand",
    "pow",
    "range",
    "regex",
    "regex_replace",
    "regexall",
    "replace",
    "reverse",
    "rfc3339_parse",
    "rsadecrypt",
    "setintersection",
    "setproduct",
    "setunion",
    "sha1",
    "sha256",
    "sha512",
    "signum",
    "slice",
    "sort",
    "split",
    "startswith",
    "strcontains",
    "strrev",
    "substr",
    "sum",
    "templatefile",
    "textdecodebase64",
    "textencodebase64",
    "timeadd",
    "timestamp",
    "title",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "try",
    "unix_timestamp_parse",
    "upper",
    "urlencode",
    "uuidv4",
    "uuidv5",
    "values",
    "vault",
    "yamldecode",
    "yamlencode",
    "zipmap",
];

/// Where file functions resolve relative paths and whether network-backed functions may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionEnv {
    /// The directory of the template being evaluated (`path.root`): `file`, `fileset`,
    /// `templatefile` and the other file readers resolve relative paths against it, as Packer
    /// does (its `Basedir`).
    pub path_root: PathBuf,
    /// The working directory (`path.cwd`): `abspath` resolves relative paths against it.
    pub cwd: PathBuf,
    /// True when kiln must not reach the network (`vault`, `consul_key`, … then fail, naming
    /// the URL).
    pub offline: bool,
}

/// An expression that could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// hcl-rs rejected the expression or a function returned an error.
    #[error(transparent)]
    Eval(#[from] hcl::eval::Error),
    /// Every argument of a `try(...)` call failed.
    #[error("no argument of try() could be evaluated:\n  {}", .errors.join("\n  "))]
    TryFailed {
        /// Why each argument failed, in order.
        errors: Vec<String>,
    },
    /// A call to `try`, `can` or `convert` had the wrong number of arguments.
    #[error("{function}() expects {expected}, got {got} argument(s)")]
    Arity {
        /// The function called.
        function: &'static str,
        /// What it expects, in words.
        expected: &'static str,
        /// How many arguments were given.
        got: usize,
    },
    /// A conditional or `for` expression around a lazy call was malformed.
    #[error("{0}")]
    Invalid(String),
    /// `convert(value, type)` could not convert.
    #[error("convert(): {0}")]
    Convert(#[source] FnError),
    /// A template string (`"…${…}…"`) could not be parsed.
    #[error("invalid template string: {0}")]
    Template(#[source] hcl::Error),
}

/// Why a function of the library failed. hcl-rs only carries the message (see `hcl_fn!`), so
/// each message is what a template author reads; the variants keep the kinds apart for kiln.
#[derive(Debug, thiserror::Error)]
pub enum FnError {
    // Arguments of the wrong type.
    /// An argument is not of the type the function needs.
    #[error("expected {expected}, got `{got}`")]
    Type {
        /// The type needed, in words ("a string", "a list").
        expected: &'static str,
        /// The argument given.
        got: Value,
    },
    /// A string given for a number does not hold one.
    #[error("expected a number, got the string \"{0}\"")]
    NumericString(String),
    /// A number hcl-rs holds that has no `f64` value.
    #[error("`{0}` is not a number")]
    NotANumber(hcl::Number),
    /// A number with a fractional part where a whole one is needed.
    #[error("expected a whole number, got {0}")]
    NotWhole(f64),
    /// A null where a string is needed.
    #[error("a null value cannot be used as a string")]
    NullString,
    /// `length()` of something that is not a string, list or map.
    #[error("cannot take the length of `{0}`")]
    NoLength(Value),
    /// An operand of an arithmetic operator that is not a number.
    #[error("`{op}` needs numbers, got `{value}` (in an operation with `{other}`)")]
    Operand {
        /// The operator.
        op: &'static str,
        /// The operand that is not a number (boxed, as is the other, to keep `FnError` small).
        value: Box<Value>,
        /// The other operand.
        other: Box<Value>,
    },
    /// `%t` in a format string given something other than a bool.
    #[error("%t needs a bool, got `{0}`")]
    FormatBool(Value),
    /// An integer verb (`%d`, `%x`, …) in a format string given a fractional number.
    #[error("%{verb} needs a whole number, got {got}")]
    FormatWhole {
        /// The verb.
        verb: char,
        /// The number given.
        got: f64,
    },

    // Arguments of the wrong number.
    /// The call has too few or too many arguments; says what the function takes.
    #[error("{0}")]
    Arity(&'static str),

    // Arguments out of range, and results beyond kiln's bounds.
    /// A count, index or size that must not be negative (names it).
    #[error("{0} must not be negative")]
    Negative(&'static str),
    /// A function that needs a non-empty list got an empty one (says what it could not do).
    #[error("cannot {0} an empty list")]
    EmptyList(&'static str),
    /// `coalesce()` found nothing to return.
    #[error("no non-null, non-empty-string arguments")]
    NothingToCoalesce,
    /// `coalescelist()` found nothing to return.
    #[error("no non-empty list arguments")]
    NoNonEmptyList,
    /// `index()` of a value the list lacks.
    #[error("`{0}` is not in the list")]
    NotInList(Value),
    /// `lookup()` of a missing key without a default.
    #[error("the map has no key \"{0}\" and no default was given")]
    NoSuchKey(String),
    /// `one()` of a list of more than one element.
    #[error("one() needs at most one element, got {0}")]
    MoreThanOne(usize),
    /// `range()` with a step of zero.
    #[error("the step of range() must not be zero")]
    ZeroStep,
    /// `range()` with a step that never reaches the end.
    #[error("the step of range() goes away from the end")]
    StepAwayFromEnd,
    /// `range()` of too many elements.
    #[error("range() would produce more than 1024 elements")]
    RangeTooLong,
    /// `setproduct()` of more elements than [`args::MAX_ELEMENTS`].
    #[error(
        "setproduct: the product of sets of {sizes} elements is more than kiln allows (max {max} \
         elements)",
        max = args::MAX_ELEMENTS
    )]
    ProductTooLarge {
        /// The sizes of the sets, as `2 × 3`.
        sizes: String,
    },
    /// `indent()` by more spaces than [`args::MAX_STRING_BYTES`] allows.
    #[error(
        "indent: {0} spaces is more than kiln allows (max {max} bytes in the result)",
        max = args::MAX_STRING_BYTES
    )]
    IndentTooLarge(i64),
    /// `slice()` bounds outside the list.
    #[error("cannot slice [{start}:{end}] from a list of {len} elements")]
    SliceBounds {
        /// The start index given.
        start: i64,
        /// The end index given.
        end: i64,
        /// The list's length.
        len: usize,
    },
    /// `zipmap()` of lists of different lengths.
    #[error("zipmap() needs as many values as keys ({keys} keys, {values} values)")]
    ZipmapLengths {
        /// How many keys.
        keys: usize,
        /// How many values.
        values: usize,
    },
    /// `formatlist()` of lists of different lengths.
    #[error("all list arguments of formatlist() must have the same length")]
    FormatlistLengths,
    /// `substr()` at an offset outside the string.
    #[error("offset {0} is outside the string")]
    OffsetOutside(i64),
    /// `cidrhost()` of a host number the network does not hold.
    #[error("host number {host} is outside the network {network}")]
    HostOutside {
        /// The host number given.
        host: i64,
        /// The network, as a CIDR prefix.
        network: String,
    },
    /// `cidrnetmask()` of an IPv6 prefix.
    #[error("cidrnetmask() only works with IPv4 prefixes")]
    NetmaskOfIpv6,
    /// A subnet prefix longer than the address.
    #[error(
        "cannot extend the prefix /{prefix} by {newbits} bits: only {available} bits are available"
    )]
    PrefixTooLong {
        /// The network's prefix length.
        prefix: u32,
        /// The bits to add.
        newbits: u32,
        /// The host bits of the network.
        available: u32,
    },
    /// A subnet number too large for the bits added.
    #[error("netnum {netnum} does not fit in {newbits} bits")]
    NetnumTooLarge {
        /// The subnet number.
        netnum: u128,
        /// The bits added to the prefix.
        newbits: u32,
    },
    /// `cidrsubnets()` of a subnet the size of the whole IPv6 space.
    #[error("cidrsubnets() cannot allocate a subnet as large as all of IPv6")]
    SubnetTooLarge,
    /// `cidrsubnets()` of subnets the network cannot hold.
    #[error("not enough room in {0} for all the subnets")]
    NoRoom(String),
    /// A bcrypt cost outside 4..=31.
    #[error("the bcrypt cost must be between 4 and 31, got {0}")]
    BcryptCost(i64),
    /// A `parseint()` base outside 2..=62.
    #[error("the base must be between 2 and 62, got {0}")]
    Base(i64),
    /// An integer that does not fit 64 bits.
    #[error("\"{0}\" is too large")]
    IntegerTooLarge(String),
    /// A numeric result that is not finite.
    #[error("the result {0} is not a finite number")]
    NotFinite(f64),
    /// An arithmetic result beyond kiln's numbers.
    #[error("the result {0} is too large for kiln's numbers")]
    ResultTooLarge(f64),
    /// `0 / 0`.
    #[error("0 / 0 has no value")]
    ZeroByZero,
    /// A division of a non-zero number by zero.
    #[error(
        "{0} / 0: division by zero (Packer gives an infinity, which kiln's numbers cannot hold)"
    )]
    DivisionByZero(Value),
    /// A Unix time outside chrono's range.
    #[error("{0} is out of range for a timestamp")]
    TimestampOutOfRange(i64),
    /// `timeadd()` past chrono's range.
    #[error("the resulting time is out of range")]
    TimeOutOfRange,
    /// A format width above `string::MAX_WIDTH`.
    #[error("a field width above {0} is not supported")]
    WidthTooLarge(usize),
    /// A format precision above `string::MAX_WIDTH`.
    #[error("a precision above {0} is not supported")]
    PrecisionTooLarge(usize),
    /// A file larger than `filesystem::MAX_FILE_BYTES`.
    #[error(
        "{path} is larger than kiln reads into a template value (max {max} bytes)",
        path = .0.display(),
        max = filesystem::MAX_FILE_BYTES
    )]
    FileTooLarge(PathBuf),

    // Invalid input.
    /// `convert()` of a value to a type it does not fit.
    #[error("cannot convert `{value}` to {target}")]
    Convert {
        /// The value.
        value: Value,
        /// The type, in words ("a list").
        target: &'static str,
    },
    /// A tuple conversion of a list of another length.
    #[error("a tuple of {expected} elements is required, got {got}")]
    TupleLength {
        /// The tuple type's length.
        expected: usize,
        /// The list's length.
        got: usize,
    },
    /// An object conversion of a map that lacks an attribute.
    #[error("attribute \"{0}\" is required")]
    MissingAttribute(String),
    /// A type name HCL does not have.
    #[error("unknown type `{0}`")]
    UnknownType(String),
    /// A type constructor HCL does not have.
    #[error("unknown type constructor `{0}`")]
    UnknownTypeConstructor(String),
    /// `tuple(...)` of something other than a list of types.
    #[error("tuple(...) takes a list of types")]
    TupleTypeSyntax,
    /// `object(...)` of something other than an object of types.
    #[error("object(...) takes an object of attribute types")]
    ObjectTypeSyntax,
    /// An attribute name of `object(...)` that is not a name (shown as parsed).
    #[error("invalid attribute name `{0}`")]
    AttributeName(String),
    /// An expression that is not a type.
    #[error("expected a type such as string, number, bool, list(string)")]
    NotAType,
    /// An invalid regular expression.
    #[error("invalid regular expression {pattern:?}: {source}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        #[source]
        source: regex::Error,
    },
    /// `regex()` found no match.
    #[error("pattern {0:?} did not match any part of the string")]
    NoMatch(String),
    /// A string that is not a CIDR prefix.
    #[error("\"{0}\" is not a CIDR prefix such as 10.0.0.0/16")]
    Cidr(String),
    /// A string that is not an RFC 3339 timestamp.
    #[error("\"{text}\" is not a valid RFC 3339 timestamp")]
    Timestamp {
        /// The string.
        text: String,
        /// Why chrono refused it.
        #[source]
        source: chrono::ParseError,
    },
    /// A string that is not a Go duration.
    #[error("\"{0}\" is not a valid duration (examples: 30s, 1h30m, -10m)")]
    Duration(String),
    /// A `formatdate()` spec with an unclosed `'…'`.
    #[error("the format has an unterminated quoted literal")]
    UnterminatedLiteral,
    /// A `formatdate()` verb that does not exist.
    #[error("invalid date format verb \"{0}\"")]
    DateVerb(String),
    /// A `legacy_strftime()` format chrono cannot display.
    #[error("\"{0}\" is not a valid strftime format")]
    Strftime(String),
    /// A string that is not base64.
    #[error("the string is not valid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// `base64decode()` of bytes that are not text.
    #[error("the decoded bytes are not valid UTF-8 (use textdecodebase64)")]
    DecodedNotUtf8(#[source] std::string::FromUtf8Error),
    /// Invalid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A value serde_json cannot encode.
    #[error("cannot encode as JSON: {0}")]
    JsonEncode(#[source] serde_json::Error),
    /// A value serde_json cannot encode, within a format string.
    #[error("{0}")]
    FormatJson(#[source] serde_json::Error),
    /// Invalid YAML.
    #[error("invalid YAML: {0}")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// A value serde_yaml cannot encode.
    #[error("cannot encode as YAML: {0}")]
    YamlEncode(#[source] serde_yaml_ng::Error),
    /// Compression failed.
    #[error("cannot gzip the string: {0}")]
    Gzip(#[source] std::io::Error),
    /// A text encoding kiln does not know.
    #[error(
        "\"{0}\" is not a supported encoding (kiln knows UTF-8, UTF-16LE, UTF-16BE, ISO-8859-1 \
         and US-ASCII)"
    )]
    UnknownEncoding(String),
    /// A string with characters the encoding (named) cannot represent.
    #[error("the string has characters that {0} cannot represent")]
    Unrepresentable(String),
    /// Bytes that are not text in the encoding (named).
    #[error("the bytes are not valid {0}")]
    Undecodable(String),
    /// A CSV row with another number of fields than the header.
    #[error("CSV row {row} has {fields} fields, the header has {header}")]
    CsvRow {
        /// The row's line, counting the header as 1.
        row: usize,
        /// Its fields.
        fields: usize,
        /// The header's fields.
        header: usize,
    },
    /// CSV data that ends inside quotes.
    #[error("the CSV data ends inside a quoted field")]
    CsvQuote,
    /// A string that is not an integer in the base given.
    #[error("cannot parse \"{text}\" as a base {base} integer")]
    ParseInt {
        /// The string.
        text: String,
        /// The base.
        base: i64,
    },
    /// A `uuidv5()` namespace that is neither a name nor a UUID.
    #[error("the namespace must be dns, url, oid, x500 or a UUID, got \"{got}\"")]
    UuidNamespace {
        /// The namespace given.
        got: String,
        /// Why it is not a UUID.
        #[source]
        source: uuid::Error,
    },
    /// bcrypt refused to hash.
    #[error("bcrypt failed: {0}")]
    Bcrypt(#[source] bcrypt::BcryptError),
    /// A format string's `%[n]` index that is not a number.
    #[error("invalid argument index [{0}] in format string")]
    FormatIndex(String),
    /// A format string's `%[0]`.
    #[error("argument indexes in format strings start at 1")]
    FormatIndexZero,
    /// A format string that ends after `%`.
    #[error("format string ends with an incomplete verb")]
    IncompleteVerb,
    /// A format verb without an argument.
    #[error("not enough arguments for format string (verb %{verb} needs argument {position})")]
    MissingFormatArgument {
        /// The verb.
        verb: char,
        /// The argument it needs, from 1.
        position: usize,
    },
    /// More arguments than the format string uses.
    #[error("too many arguments: the format string uses {used}, {given} were given")]
    ExtraFormatArguments {
        /// How many it uses.
        used: usize,
        /// How many were given.
        given: usize,
    },
    /// A format verb kiln does not know.
    #[error("unsupported format verb %{0}")]
    FormatVerb(char),
    /// A `templatefile()` variable name that is not an identifier.
    #[error("\"{0}\" cannot be used as a template variable name")]
    TemplateVariableName(String),
    /// `templatefile()` inside a template file.
    #[error("templatefile() cannot be called from inside a template file")]
    NestedTemplatefile,
    /// A template file that could not be evaluated.
    #[error("in template {path}: {source}")]
    Template {
        /// The template's path, as given.
        path: String,
        /// Why it failed.
        #[source]
        source: Box<EvalError>,
    },

    // Files.
    /// A file that could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file, resolved.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file whose existence could not be checked.
    #[error("cannot check {}: {source}", .path.display())]
    Check {
        /// The file, resolved.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path to read that is not a regular file (a FIFO would block forever).
    #[error("{} is not a regular file (a {kind}); kiln reads only regular files", .path.display())]
    NotRegular {
        /// The file, resolved.
        path: PathBuf,
        /// What it is instead ("directory", "FIFO").
        kind: &'static str,
    },
    /// `fileexists()` of something that exists but is not a regular file.
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// A file read as text that is not UTF-8; `hint` names the alternative, if any.
    #[error("{path} is not valid UTF-8 text{hint}")]
    NotText {
        /// The file, as given.
        path: String,
        /// Advice appended to the message (" (use filebase64)"), or empty.
        hint: &'static str,
        /// Where the bytes stop being UTF-8.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// An invalid `fileset()` pattern.
    #[error("invalid pattern \"{pattern}\": {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        #[source]
        source: glob::PatternError,
    },
    /// A directory `fileset()` could not list.
    #[error("cannot list files: {0}")]
    ListFiles(#[source] glob::GlobError),

    /// A secret-store lookup failed (or was refused offline); boxed, as it is large.
    #[error(transparent)]
    Secret(Box<secrets::SecretError>),

    // Functions kiln does not offer.
    /// A function kiln does not implement.
    #[error("{0}() is not supported by kiln yet")]
    Unsupported(&'static str),
}

impl From<secrets::SecretError> for FnError {
    fn from(e: secrets::SecretError) -> Self {
        FnError::Secret(Box::new(e))
    }
}

/// The variable `register` stores the [`FunctionEnv`] in, so `evaluate` can find it again:
/// hcl-rs functions are plain `fn` pointers and cannot capture it.
const ENV_VAR: &str = "kiln_function_env";

thread_local! {
    static ENV: RefCell<Option<FunctionEnv>> = const { RefCell::new(None) };
}

/// Declares all of Packer's functions in `ctx`, bound to `env`.
pub fn register(ctx: &mut Context, env: &FunctionEnv) {
    let mut stored = hcl::Map::new();
    stored.insert(
        "path_root".to_owned(),
        Value::from(env.path_root.to_string_lossy().into_owned()),
    );
    stored.insert(
        "cwd".to_owned(),
        Value::from(env.cwd.to_string_lossy().into_owned()),
    );
    stored.insert("offline".to_owned(), Value::Bool(env.offline));
    ctx.declare_var(ENV_VAR, Value::Object(stored));

    collection::register(ctx);
    contextual::register(ctx);
    conversion::register(ctx);
    crypto::register(ctx);
    datetime::register(ctx);
    encoding::register(ctx);
    filesystem::register(ctx);
    ipnet::register(ctx);
    numeric::register(ctx);
    operators::register(ctx);
    string::register(ctx);
}

/// Evaluates `expr` in `ctx` (prepared with [`register`]), with lazy `try`, `can` and `convert`
/// and with arithmetic checked by kiln (see the `operators` module) rather than by hcl-rs.
pub fn evaluate(expr: &Expression, ctx: &Context) -> Result<Value, EvalError> {
    let _env = EnvGuard::install(ctx);
    let mut expr = expr.clone();
    operators::rewrite(&mut expr);
    let resolved = resolve(&expr, ctx)?;
    Ok(resolved.evaluate(ctx)?)
}

/// Evaluates a literal expression (a variable default, a `-var` value): no variables and no
/// functions, but arithmetic checked as in [`evaluate`].
pub fn evaluate_literal(expr: &Expression) -> Result<Value, EvalError> {
    let mut ctx = Context::new();
    operators::register(&mut ctx);
    let mut expr = expr.clone();
    operators::rewrite(&mut expr);
    Ok(expr.evaluate(&ctx)?)
}

/// Makes the context's [`FunctionEnv`] visible to the functions for the duration of one
/// evaluation, restoring the previous one afterwards (evaluations may nest through
/// `templatefile`).
struct EnvGuard {
    previous: Option<FunctionEnv>,
}

impl EnvGuard {
    fn install(ctx: &Context) -> EnvGuard {
        let stored = Expression::Variable(hcl::expr::Variable::unchecked(ENV_VAR))
            .evaluate(ctx)
            .ok();
        let env = stored.and_then(|v| {
            let obj = v.as_object()?;
            Some(FunctionEnv {
                path_root: PathBuf::from(obj.get("path_root")?.as_str()?),
                cwd: PathBuf::from(obj.get("cwd")?.as_str()?),
                offline: obj.get("offline")?.as_bool()?,
            })
        });
        let previous = ENV.with(|cell| cell.replace(env));
        EnvGuard { previous }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ENV.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// The environment of the evaluation in progress; outside [`evaluate`] (a plain hcl-rs
/// evaluation) the process's working directory, online.
fn current_env() -> FunctionEnv {
    ENV.with(|cell| cell.borrow().clone()).unwrap_or_else(|| {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        FunctionEnv {
            path_root: cwd.clone(),
            cwd,
            offline: false,
        }
    })
}

/// Resolves a path argument of a file function against the template's directory, after `~`
/// expansion, as Packer does.
fn resolve_path(path: &str) -> PathBuf {
    let expanded = filesystem::expand_home(path);
    let p = Path::new(&expanded);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        current_env().path_root.join(p)
    }
}

/// Names of the functions that need their arguments unevaluated.
fn is_lazy(name: &str) -> bool {
    matches!(name, "try" | "can" | "convert")
}

fn contains_lazy(expr: &Expression) -> bool {
    match expr {
        Expression::FuncCall(call) => {
            (call.name.namespace.is_empty() && is_lazy(call.name.name.as_str()))
                || call.args.iter().any(contains_lazy)
        }
        Expression::Array(items) => items.iter().any(contains_lazy),
        Expression::Object(obj) => obj.iter().any(|(k, v)| {
            matches!(k, ObjectKey::Expression(e) if contains_lazy(e)) || contains_lazy(v)
        }),
        Expression::TemplateExpr(t) => {
            let src = t.to_string();
            ["try(", "can(", "convert("].iter().any(|f| src.contains(f))
        }
        Expression::Traversal(t) => {
            contains_lazy(&t.expr)
                || t.operators.iter().any(
                    |op| matches!(op, hcl::expr::TraversalOperator::Index(e) if contains_lazy(e)),
                )
        }
        Expression::Parenthesis(e) => contains_lazy(e),
        Expression::Conditional(c) => {
            contains_lazy(&c.cond_expr)
                || contains_lazy(&c.true_expr)
                || contains_lazy(&c.false_expr)
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => contains_lazy(&u.expr),
            hcl::expr::Operation::Binary(b) => {
                contains_lazy(&b.lhs_expr) || contains_lazy(&b.rhs_expr)
            }
        },
        Expression::ForExpr(f) => {
            contains_lazy(&f.collection_expr)
                || f.key_expr.as_ref().is_some_and(contains_lazy)
                || contains_lazy(&f.value_expr)
                || f.cond_expr.as_ref().is_some_and(contains_lazy)
        }
        _ => false,
    }
}

/// Rewrites `expr` bottom-up, replacing each `try`/`can`/`convert` call by its result, so that
/// the ordinary (eager) evaluation never sees them. Conditionals only resolve the branch taken
/// and `for` expressions containing lazy calls are evaluated here, element by element.
fn resolve(expr: &Expression, ctx: &Context) -> Result<Expression, EvalError> {
    if !contains_lazy(expr) {
        return Ok(expr.clone());
    }
    Ok(match expr {
        Expression::FuncCall(call) => resolve_call(call, ctx)?,
        Expression::Array(items) => Expression::Array(
            items
                .iter()
                .map(|e| resolve(e, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Expression::Object(obj) => {
            let mut out = hcl::expr::Object::new();
            for (k, v) in obj {
                let key = match k {
                    ObjectKey::Expression(e) => ObjectKey::Expression(resolve(e, ctx)?),
                    other => other.clone(),
                };
                out.insert(key, resolve(v, ctx)?);
            }
            Expression::Object(out)
        }
        Expression::TemplateExpr(t) => resolve_template(t, ctx)?,
        Expression::Traversal(t) => {
            let mut t = t.as_ref().clone();
            t.expr = resolve(&t.expr, ctx)?;
            for op in &mut t.operators {
                if let hcl::expr::TraversalOperator::Index(e) = op {
                    *e = resolve(e, ctx)?;
                }
            }
            Expression::Traversal(Box::new(t))
        }
        Expression::Parenthesis(e) => Expression::Parenthesis(Box::new(resolve(e, ctx)?)),
        Expression::Conditional(c) => {
            let cond = resolve(&c.cond_expr, ctx)?.evaluate(ctx)?;
            match cond {
                Value::Bool(true) => resolve(&c.true_expr, ctx)?,
                Value::Bool(false) => resolve(&c.false_expr, ctx)?,
                other => {
                    return Err(EvalError::Invalid(format!(
                        "the condition of a conditional must be a bool, got `{other}`"
                    )))
                }
            }
        }
        Expression::Operation(op) => {
            let mut op = op.as_ref().clone();
            match &mut op {
                hcl::expr::Operation::Unary(u) => u.expr = resolve(&u.expr, ctx)?,
                hcl::expr::Operation::Binary(b) => {
                    b.lhs_expr = resolve(&b.lhs_expr, ctx)?;
                    b.rhs_expr = resolve(&b.rhs_expr, ctx)?;
                }
            }
            Expression::Operation(Box::new(op))
        }
        Expression::ForExpr(f) => Expression::from(evaluate_for(f, ctx)?),
        other => other.clone(),
    })
}

fn resolve_call(call: &FuncCall, ctx: &Context) -> Result<Expression, EvalError> {
    let name = call.name.name.as_str();
    if !call.name.namespace.is_empty() || !is_lazy(name) {
        let mut call = call.clone();
        for arg in &mut call.args {
            *arg = resolve(arg, ctx)?;
        }
        return Ok(Expression::FuncCall(Box::new(call)));
    }
    let attempt = |e: &Expression| resolve(e, ctx).and_then(|e| Ok(e.evaluate(ctx)?));
    match name {
        "try" => {
            if call.args.is_empty() {
                return Err(EvalError::Arity {
                    function: "try",
                    expected: "at least one argument",
                    got: 0,
                });
            }
            let mut errors = Vec::new();
            for arg in &call.args {
                match attempt(arg) {
                    Ok(v) => return Ok(Expression::from(v)),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            Err(EvalError::TryFailed { errors })
        }
        "can" => {
            if call.args.len() != 1 {
                return Err(EvalError::Arity {
                    function: "can",
                    expected: "exactly one argument",
                    got: call.args.len(),
                });
            }
            Ok(Expression::Bool(attempt(&call.args[0]).is_ok()))
        }
        _ => {
            if call.args.len() != 2 {
                return Err(EvalError::Arity {
                    function: "convert",
                    expected: "a value and a type",
                    got: call.args.len(),
                });
            }
            let value = attempt(&call.args[0])?;
            let ty = conversion::TypeExpr::parse(&call.args[1]).map_err(EvalError::Convert)?;
            Ok(Expression::from(
                ty.convert(value).map_err(EvalError::Convert)?,
            ))
        }
    }
}

fn resolve_template(t: &TemplateExpr, ctx: &Context) -> Result<Expression, EvalError> {
    let mut template = Template::from_expr(t).map_err(EvalError::Template)?;
    for element in template.elements_mut() {
        if let Element::Interpolation(interp) = element {
            interp.expr = Expression::from(attempt_value(&interp.expr, ctx)?);
        }
    }
    let text = template.to_string();
    Ok(Expression::TemplateExpr(Box::new(match t {
        TemplateExpr::QuotedString(_) => TemplateExpr::QuotedString(text),
        TemplateExpr::Heredoc(h) => {
            let mut h = h.clone();
            h.template = text;
            TemplateExpr::Heredoc(h)
        }
    })))
}

fn attempt_value(expr: &Expression, ctx: &Context) -> Result<Value, EvalError> {
    Ok(resolve(expr, ctx)?.evaluate(ctx)?)
}

fn evaluate_for(f: &hcl::expr::ForExpr, ctx: &Context) -> Result<Value, EvalError> {
    let collection = attempt_value(&f.collection_expr, ctx)?;
    let pairs: Vec<(Value, Value)> = match collection {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i as u64), v))
            .collect(),
        Value::Object(obj) => obj.into_iter().map(|(k, v)| (Value::from(k), v)).collect(),
        other => {
            return Err(EvalError::Invalid(format!(
                "a for expression needs a list or an object, got `{other}`"
            )))
        }
    };
    let mut list = Vec::new();
    let mut object: hcl::Map<String, Value> = hcl::Map::new();
    for (key, value) in pairs {
        let mut scope = ctx.clone();
        if let Some(key_var) = &f.key_var {
            scope.declare_var(key_var.clone(), key);
        }
        scope.declare_var(f.value_var.clone(), value);
        if let Some(cond) = &f.cond_expr {
            match attempt_value(cond, &scope)? {
                Value::Bool(true) => {}
                Value::Bool(false) => continue,
                other => {
                    return Err(EvalError::Invalid(format!(
                        "the condition of a for expression must be a bool, got `{other}`"
                    )))
                }
            }
        }
        let item = attempt_value(&f.value_expr, &scope)?;
        match &f.key_expr {
            None => list.push(item),
            Some(key_expr) => {
                let key = match attempt_value(key_expr, &scope)? {
                    Value::String(s) => s,
                    other => conversion::to_string(&other).map_err(EvalError::Convert)?,
                };
                if f.grouping {
                    if let Value::Array(group) = object
                        .entry(key)
                        .or_insert_with(|| Value::Array(Vec::new()))
                    {
                        group.push(item);
                    }
                } else if object.contains_key(&key) {
                    return Err(EvalError::Invalid(format!(
                        "duplicate key `{key}` in a for expression (use `...` to group)"
                    )));
                } else {
                    object.insert(key, item);
                }
            }
        }
    }
    Ok(if f.key_expr.is_some() {
        Value::Object(object)
    } else {
        Value::Array(list)
    })
}

/// Helpers shared by the function families: argument access with messages that name the
/// expected type, and number construction that keeps integers integral.
mod args {
    use hcl::Value;

    use super::FnError;

    pub(super) type FnResult = Result<Value, FnError>;

    fn wrong_type(expected: &'static str, got: &Value) -> FnError {
        FnError::Type {
            expected,
            got: got.clone(),
        }
    }

    pub(super) fn string(v: &Value) -> Result<&str, FnError> {
        v.as_str().ok_or_else(|| wrong_type("a string", v))
    }

    pub(super) fn number(v: &Value) -> Result<f64, FnError> {
        match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| FnError::NotANumber(*n)),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| FnError::NumericString(s.clone())),
            other => Err(wrong_type("a number", other)),
        }
    }

    pub(super) fn integer(v: &Value) -> Result<i64, FnError> {
        let f = number(v)?;
        if f.fract() != 0.0 || !f.is_finite() {
            return Err(FnError::NotWhole(f));
        }
        Ok(f as i64)
    }

    /// The longest string a function builds in proportion to a number from the template (an
    /// indent): beyond it the number is surely a mistake, and would exhaust memory.
    pub(super) const MAX_STRING_BYTES: usize = 64 << 20;

    /// The most elements a function builds from the sizes of its arguments (`setproduct`).
    pub(super) const MAX_ELEMENTS: usize = 1 << 20;

    pub(super) fn array(v: &Value) -> Result<&Vec<Value>, FnError> {
        v.as_array().ok_or_else(|| wrong_type("a list", v))
    }

    pub(super) fn object(v: &Value) -> Result<&hcl::Map<String, Value>, FnError> {
        v.as_object()
            .ok_or_else(|| wrong_type("a map or object", v))
    }

    pub(super) fn boolean(v: &Value) -> Result<bool, FnError> {
        match v {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            other => Err(wrong_type("a bool", other)),
        }
    }

    /// A number value, integral when it has no fractional part (so `3.0` prints as `3`).
    pub(super) fn num(f: f64) -> FnResult {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Ok(Value::from(f as i64))
        } else {
            hcl::Number::from_f64(f)
                .map(Value::Number)
                .ok_or(FnError::NotFinite(f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ctx() -> Context<'static> {
        let mut ctx = Context::new();
        let cwd = std::env::current_dir().unwrap();
        register(
            &mut ctx,
            &FunctionEnv {
                path_root: cwd.clone(),
                cwd,
                offline: true,
            },
        );
        ctx
    }

    /// Evaluates an HCL expression written as source text.
    pub(super) fn eval(src: &str) -> Result<Value, EvalError> {
        eval_in(src, &ctx())
    }

    pub(super) fn eval_in(src: &str, ctx: &Context) -> Result<Value, EvalError> {
        let body: hcl::Body = hcl::from_str(&format!("x = {src}\n")).unwrap();
        let attr = body.attributes().next().unwrap();
        evaluate(attr.expr(), ctx)
    }

    pub(super) fn ok(src: &str) -> Value {
        match eval(src) {
            Ok(v) => v,
            Err(e) => panic!("{src}: {e}"),
        }
    }

    pub(super) fn json(src: &str) -> String {
        serde_json::to_string(&ok(src)).unwrap()
    }

    #[test]
    fn try_returns_first_success() {
        assert_eq!(
            ok(r#"try(undefined_thing, "fallback")"#),
            Value::from("fallback")
        );
        assert_eq!(ok(r#"try({a = 1}.b, {a = 1}.a)"#), Value::from(1));
    }

    #[test]
    fn try_fails_when_all_fail_and_says_why() {
        let err = eval("try(nope, also_nope)").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("also_nope"), "{err}");
    }

    #[test]
    fn can_reports_success() {
        assert_eq!(ok("can(nope)"), Value::Bool(false));
        assert_eq!(ok(r#"can(upper("x"))"#), Value::Bool(true));
        assert_eq!(ok(r#"can(regex("^[a-z]+$", "123"))"#), Value::Bool(false));
    }

    #[test]
    fn lazy_calls_nest_in_templates_conditionals_and_for() {
        assert_eq!(ok(r#""v-${try(nope, "x")}""#), Value::from("v-x"));
        assert_eq!(
            ok(r#""a\"b\n${try(nope, "x")} $${z}""#),
            Value::from("a\"b\nx ${z}")
        );
        assert_eq!(ok(r#"true ? "a" : try(nope)"#), Value::from("a"));
        assert_eq!(
            json(r#"[for s in ["1", "x"] : try(tonumber(s), -1)]"#),
            "[1,-1]"
        );
        assert_eq!(
            json(r#"{for s in ["a", "bb"] : s => can(regex("^b", s))}"#),
            r#"{"a":false,"bb":true}"#
        );
    }

    #[test]
    fn lazy_call_arity_is_checked() {
        assert!(matches!(eval("can(1, 2)"), Err(EvalError::Arity { .. })));
        assert!(matches!(eval("try()"), Err(EvalError::Arity { .. })));
    }

    #[test]
    fn kiln_has_every_packer_function() {
        let ctx = ctx();
        let missing: Vec<&str> = PACKER_FUNCTIONS
            .iter()
            .copied()
            .filter(|f| !is_lazy(f))
            .filter(|f| {
                // An undefined function is the only failure that names "undefined function".
                eval_in(&format!("{f}()"), &ctx)
                    .err()
                    .is_some_and(|e| e.to_string().contains("undefined function"))
            })
            .collect();
        assert!(missing.is_empty(), "functions kiln lacks: {missing:?}");
    }

    fn call(name: &str, args: Vec<Expression>) -> Result<Value, EvalError> {
        let mut call = FuncCall::new(name);
        call.args = args;
        evaluate(&Expression::FuncCall(Box::new(call)), &ctx())
    }

    proptest::proptest! {
        /// Format strings, layouts, durations and prefixes from templates are untrusted input:
        /// functions must return errors, never panic.
        #[test]
        fn functions_never_panic_on_odd_strings(s in "\\PC{0,24}", n in -300i64..300) {
            let st = || Expression::String(s.clone());
            let ts = || Expression::String("2024-02-29T12:00:00+05:30".into());
            let _ = call("format", vec![st(), Expression::from(n), Expression::String("a".into())]);
            let _ = call("formatdate", vec![st(), ts()]);
            let _ = call("timeadd", vec![ts(), st()]);
            let _ = call("legacy_strftime", vec![st()]);
            let _ = call("legacy_isotime", vec![st()]);
            let _ = call("regex", vec![st(), Expression::String("abc".into())]);
            let _ = call("cidrhost", vec![st(), Expression::from(n)]);
            let _ = call("cidrsubnets", vec![Expression::String("10.0.0.0/8".into()), Expression::from(n)]);
            let _ = call("substr", vec![st(), Expression::from(n), Expression::from(n / 2)]);
            let _ = call("parseint", vec![st(), Expression::from(n)]);
            let _ = call("csvdecode", vec![st()]);
            let _ = call("yamldecode", vec![st()]);
            let _ = call("textdecodebase64", vec![st(), Expression::String("UTF-16LE".into())]);
            let _ = call("rfc3339_parse", vec![st()]);
        }
    }
}
