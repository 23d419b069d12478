//! Date and time functions: formatdate, timeadd, timestamp, legacy_isotime (Go reference-time
//! layouts), legacy_strftime (C strftime), rfc3339_parse, unix_timestamp_parse.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, TimeZone, Timelike, Utc};
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

use super::args::{integer, string, FnResult};
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let s = |f| FuncDef::new(f, [ParamType::String]);
    ctx.declare_func(
        "formatdate",
        FuncDef::new(hcl_fn!(formatdate), [ParamType::String, ParamType::String]),
    );
    ctx.declare_func(
        "timeadd",
        FuncDef::new(hcl_fn!(timeadd), [ParamType::String, ParamType::String]),
    );
    ctx.declare_func("timestamp", FuncDef::new(hcl_fn!(timestamp), []));
    ctx.declare_func(
        "legacy_isotime",
        FuncDef::builder()
            .variadic_param(ParamType::String)
            .build(hcl_fn!(legacy_isotime)),
    );
    ctx.declare_func("legacy_strftime", s(hcl_fn!(legacy_strftime)));
    ctx.declare_func("rfc3339_parse", s(hcl_fn!(rfc3339_parse)));
    ctx.declare_func(
        "unix_timestamp_parse",
        FuncDef::new(hcl_fn!(unix_timestamp_parse), [ParamType::Number]),
    );
}

fn parse_rfc3339(s: &str) -> Result<DateTime<FixedOffset>, FnError> {
    DateTime::parse_from_rfc3339(s).map_err(|source| FnError::Timestamp {
        text: s.to_owned(),
        source,
    })
}

fn rfc3339(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn timestamp(_: FuncArgs) -> FnResult {
    Ok(rfc3339(&Utc::now().fixed_offset()).into())
}

/// A Go duration (`1h30m`, `-90s`, `1.5h`, `300ms`) in nanoseconds, read by kiln's one
/// Go-duration parser.
fn parse_duration(s: &str) -> Result<i64, FnError> {
    let err = || FnError::Duration(s.to_owned());
    let (negative, d) = boot_commands::parse_go_duration(s).ok_or_else(err)?;
    let nanos = i64::try_from(d.as_nanos()).map_err(|_| err())?;
    Ok(if negative { -nanos } else { nanos })
}

fn timeadd(a: FuncArgs) -> FnResult {
    let t = parse_rfc3339(string(&a[0])?)?;
    let d = chrono::Duration::nanoseconds(parse_duration(string(&a[1])?)?);
    let out = t.checked_add_signed(d).ok_or(FnError::TimeOutOfRange)?;
    Ok(rfc3339(&out).into())
}

/// Terraform's `formatdate` spec: `YYYY MM DD hh mm ss` and friends, quoted literals in `'…'`.
fn formatdate(a: FuncArgs) -> FnResult {
    let spec = string(&a[0])?;
    let t = parse_rfc3339(string(&a[1])?)?;
    let mut out = String::new();
    let chars: Vec<char> = spec.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None => return Err(FnError::UnterminatedLiteral),
                    Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                        out.push('\'');
                        j += 2;
                    }
                    Some('\'') => break,
                    Some(&other) => {
                        out.push(other);
                        j += 1;
                    }
                }
            }
            if j == i + 1 {
                out.push('\'');
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let token: String = chars[i..i + run].iter().collect();
        let offset = t.offset().local_minus_utc();
        let text = match token.as_str() {
            "YYYY" => format!("{:04}", t.year()),
            "YY" => format!("{:02}", t.year() % 100),
            "MMMM" => t.format("%B").to_string(),
            "MMM" => t.format("%b").to_string(),
            "MM" => format!("{:02}", t.month()),
            "M" => t.month().to_string(),
            "DD" => format!("{:02}", t.day()),
            "D" => t.day().to_string(),
            "EEEE" => t.format("%A").to_string(),
            "EEE" => t.format("%a").to_string(),
            "hh" => format!("{:02}", t.hour()),
            "h" => t.hour().to_string(),
            "HH" => format!("{:02}", hour12(t.hour())),
            "H" => hour12(t.hour()).to_string(),
            "AA" => if t.hour() < 12 { "AM" } else { "PM" }.to_owned(),
            "aa" => if t.hour() < 12 { "am" } else { "pm" }.to_owned(),
            "mm" => format!("{:02}", t.minute()),
            "m" => t.minute().to_string(),
            "ss" => format!("{:02}", t.second()),
            "s" => t.second().to_string(),
            "ZZZZZ" => zone(offset, true, true),
            "ZZZZ" => zone(offset, false, false),
            "ZZZ" if offset == 0 => "UTC".to_owned(),
            "ZZZ" => zone(offset, false, false),
            "Z" => zone(offset, true, true),
            other => return Err(FnError::DateVerb(other.to_owned())),
        };
        out.push_str(&text);
        i += run;
    }
    Ok(out.into())
}

fn hour12(h: u32) -> u32 {
    match h % 12 {
        0 => 12,
        x => x,
    }
}

/// `+0130`, `+01:30`, or `Z` for UTC when `z_for_utc`.
fn zone(offset: i32, colon: bool, z_for_utc: bool) -> String {
    if offset == 0 && z_for_utc {
        return "Z".into();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let (h, m) = (offset.abs() / 3600, offset.abs() % 3600 / 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// Formats with a Go reference-time layout (`2006-01-02T15:04:05Z07:00`), in UTC as Packer's
/// legacy `isotime` does.
fn go_layout(layout: &str, t: &DateTime<Utc>) -> String {
    // Longest tokens first so `January` wins over `Jan`, `2006` over `2`.
    const TOKENS: &[&str] = &[
        "January", "Monday", "Z07:00", "-07:00", "Z0700", "-0700", "2006", "Jan", "Mon", "MST",
        "002", "-07", "01", "02", "_2", "03", "04", "05", "06", "15", "PM", "pm", "1", "2", "3",
        "4", "5",
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractional seconds: .000 / .999 (with any count of digits), also with a comma.
        if let Some(after) = rest.strip_prefix('.').or_else(|| rest.strip_prefix(',')) {
            let zeros = after.chars().take_while(|&c| c == '0').count();
            let nines = after.chars().take_while(|&c| c == '9').count();
            let n = zeros.max(nines);
            if n > 0 && !after[n..].starts_with(|c: char| c.is_ascii_digit()) {
                let frac = format!("{:09}", t.nanosecond());
                let digits = &frac[..n.min(9)];
                if zeros > 0 {
                    out.push_str(&rest[..1]);
                    out.push_str(digits);
                } else {
                    let trimmed = digits.trim_end_matches('0');
                    if !trimmed.is_empty() {
                        out.push_str(&rest[..1]);
                        out.push_str(trimmed);
                    }
                }
                rest = &after[n..];
                continue;
            }
        }
        for token in TOKENS {
            if let Some(after) = rest.strip_prefix(token) {
                let text = match *token {
                    "January" => t.format("%B").to_string(),
                    "Jan" => t.format("%b").to_string(),
                    "Monday" => t.format("%A").to_string(),
                    "Mon" => t.format("%a").to_string(),
                    "MST" => "UTC".to_owned(),
                    "2006" => format!("{:04}", t.year()),
                    "06" => format!("{:02}", t.year() % 100),
                    "01" => format!("{:02}", t.month()),
                    "1" => t.month().to_string(),
                    "02" => format!("{:02}", t.day()),
                    "2" => t.day().to_string(),
                    "_2" => format!("{:>2}", t.day()),
                    "002" => format!("{:03}", t.ordinal()),
                    "15" => format!("{:02}", t.hour()),
                    "03" => format!("{:02}", hour12(t.hour())),
                    "3" => hour12(t.hour()).to_string(),
                    "04" => format!("{:02}", t.minute()),
                    "4" => t.minute().to_string(),
                    "05" => format!("{:02}", t.second()),
                    "5" => t.second().to_string(),
                    "PM" => if t.hour() < 12 { "AM" } else { "PM" }.to_owned(),
                    "pm" => if t.hour() < 12 { "am" } else { "pm" }.to_owned(),
                    "Z07:00" | "Z0700" => "Z".to_owned(),
                    "-07:00" => "+00:00".to_owned(),
                    "-0700" => "+0000".to_owned(),
                    _ => "+00".to_owned(),
                };
                out.push_str(&text);
                rest = after;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

fn legacy_isotime(a: FuncArgs) -> FnResult {
    let layout = match a.len() {
        0 => "2006-01-02T15:04:05Z07:00",
        1 => string(&a[0])?,
        _ => return Err(FnError::Arity("legacy_isotime() takes at most one format")),
    };
    Ok(go_layout(layout, &Utc::now()).into())
}

fn legacy_strftime(a: FuncArgs) -> FnResult {
    let fmt = string(&a[0])?;
    // chrono panics when displaying an invalid format, so check it first.
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Err(FnError::Strftime(fmt.to_owned()));
    }
    Ok(Utc::now().format(fmt).to_string().into())
}

/// The object `rfc3339_parse` and `unix_timestamp_parse` return: the same date fields, then
/// what the input was not (`unix` for the former, `rfc3339` for the latter), as Packer's.
fn date_object(t: &DateTime<FixedOffset>, other: (&str, Value)) -> Value {
    let iso = t.iso_week();
    let mut obj = hcl::Map::new();
    let mut put = |k: &str, v: Value| {
        obj.insert(k.to_owned(), v);
    };
    put("year", Value::from(i64::from(t.year())));
    put("year_day", Value::from(u64::from(t.ordinal())));
    put("day", Value::from(u64::from(t.day())));
    put("month", Value::from(u64::from(t.month())));
    put("month_name", t.format("%B").to_string().into());
    put(
        "weekday",
        Value::from(u64::from(t.weekday().num_days_from_sunday())),
    );
    put("weekday_name", t.format("%A").to_string().into());
    put("hour", Value::from(u64::from(t.hour())));
    put("minute", Value::from(u64::from(t.minute())));
    put("second", Value::from(u64::from(t.second())));
    put(other.0, other.1);
    put("iso_year", Value::from(i64::from(iso.year())));
    put("iso_week", Value::from(u64::from(iso.week())));
    Value::Object(obj)
}

fn rfc3339_parse(a: FuncArgs) -> FnResult {
    let s = string(&a[0])?;
    // RFC 3339 also allows a space between date and time.
    let t = parse_rfc3339(s).or_else(|_| parse_rfc3339(&s.replacen(' ', "T", 1)))?;
    Ok(date_object(&t, ("unix", Value::from(t.timestamp()))))
}

fn unix_timestamp_parse(a: FuncArgs) -> FnResult {
    // A whole number that fits 64 bits, as Packer requires: no fractions.
    let secs = integer(&a[0])?;
    let t = Utc
        .timestamp_opt(secs, 0)
        .single()
        .ok_or(FnError::TimestampOutOfRange(secs))?;
    let rfc3339 = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    Ok(date_object(&t.fixed_offset(), ("rfc3339", rfc3339.into())))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, json, ok};
    use super::go_layout;
    use chrono::{TimeZone, Utc};
    use hcl::Value;

    #[test]
    fn formatdate_verbs() {
        let t = "2024-03-05T07:08:09+01:30";
        let f = |spec: &str| ok(&format!(r#"formatdate("{spec}", "{t}")"#));
        assert_eq!(f("YYYY-MM-DD hh:mm:ss"), Value::from("2024-03-05 07:08:09"));
        assert_eq!(
            f("EEE, D MMM YY H:m AA ZZZZZ"),
            Value::from("Tue, 5 Mar 24 7:8 AM +01:30")
        );
        assert_eq!(f("'at' h'h' ''ZZZZ''"), Value::from("at 7h '+0130'"));
        assert_eq!(
            ok(r#"formatdate("MMMM EEEE ZZZ", "2024-12-31T23:00:00Z")"#),
            Value::from("December Tuesday UTC")
        );
        assert!(eval(r#"formatdate("YYYY", "yesterday")"#).is_err());
        assert!(eval(r#"formatdate("Q", "2024-01-01T00:00:00Z")"#).is_err());
    }

    #[test]
    fn timeadd_durations() {
        assert_eq!(
            ok(r#"timeadd("2024-01-01T00:00:00Z", "1h30m")"#),
            Value::from("2024-01-01T01:30:00Z")
        );
        assert_eq!(
            ok(r#"timeadd("2024-01-01T00:00:00+02:00", "-1.5h")"#),
            Value::from("2023-12-31T22:30:00+02:00")
        );
        assert!(eval(r#"timeadd("2024-01-01T00:00:00Z", "10 days")"#).is_err());
    }

    #[test]
    fn timestamp_is_rfc3339_utc() {
        let ts = ok("timestamp()");
        let ts = ts.as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
    }

    #[test]
    fn go_layouts() {
        let t = Utc.with_ymd_and_hms(2021, 1, 2, 15, 4, 5).unwrap();
        assert_eq!(
            go_layout("2006-01-02T15:04:05Z07:00", &t),
            "2021-01-02T15:04:05Z"
        );
        assert_eq!(
            go_layout("Jan _2 3:04PM 06 (Mon)", &t),
            "Jan  2 3:04PM 21 (Sat)"
        );
        assert_eq!(go_layout("20060102.000", &t), "20210102.000");
        assert_eq!(ok(r#"length(legacy_isotime("2006"))"#), Value::from(4));
    }

    #[test]
    fn strftime_and_parsers() {
        assert_eq!(
            ok(r#"length(legacy_strftime("%Y-%m-%d"))"#),
            Value::from(10)
        );
        assert!(eval(r#"legacy_strftime("%Q")"#).is_err());
        assert_eq!(
            json(r#"rfc3339_parse("2023-07-25T23:43:16Z")"#),
            r#"{"year":2023,"year_day":206,"day":25,"month":7,"month_name":"July","weekday":2,"weekday_name":"Tuesday","hour":23,"minute":43,"second":16,"unix":1690328596,"iso_year":2023,"iso_week":30}"#
        );
        assert_eq!(ok("unix_timestamp_parse(0).year"), Value::from(1970));
        // Packer's docs example: the object names the RFC 3339 form, not `unix`, and takes
        // whole numbers only.
        assert_eq!(
            json("unix_timestamp_parse(1690328596)"),
            r#"{"year":2023,"year_day":206,"day":25,"month":7,"month_name":"July","weekday":2,"weekday_name":"Tuesday","hour":23,"minute":43,"second":16,"rfc3339":"2023-07-25T23:43:16Z","iso_year":2023,"iso_week":30}"#
        );
        assert!(eval("unix_timestamp_parse(1.5)").is_err());
    }
}
