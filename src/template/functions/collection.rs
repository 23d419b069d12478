//! Collection functions: alltrue, anytrue, chunklist, coalesce, coalescelist, compact, concat,
//! contains, distinct, element, flatten, index, keys, length, lookup, merge, range, reverse,
//! one, setintersection, setproduct, setunion, slice, sort, sum, transpose, values, zipmap.
//! Sets are lists without duplicates, in first-seen order.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;
use unicode_segmentation::UnicodeSegmentation;

use super::args::{array, boolean, integer, num, number, object, FnResult, MAX_ELEMENTS};
use super::conversion::to_string;
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let any = ParamType::Any;
    let one = |f| FuncDef::new(f, [ParamType::Any]);
    let two = |f| FuncDef::new(f, [ParamType::Any, ParamType::Any]);
    let many = |f| FuncDef::builder().variadic_param(ParamType::Any).build(f);
    ctx.declare_func("alltrue", one(hcl_fn!(alltrue)));
    ctx.declare_func("anytrue", one(hcl_fn!(anytrue)));
    ctx.declare_func("chunklist", two(hcl_fn!(chunklist)));
    ctx.declare_func("coalesce", many(hcl_fn!(coalesce)));
    ctx.declare_func("coalescelist", many(hcl_fn!(coalescelist)));
    ctx.declare_func("compact", one(hcl_fn!(compact)));
    ctx.declare_func("concat", many(hcl_fn!(concat)));
    ctx.declare_func("contains", two(hcl_fn!(contains)));
    ctx.declare_func("distinct", one(hcl_fn!(distinct)));
    ctx.declare_func("element", two(hcl_fn!(element)));
    ctx.declare_func("flatten", one(hcl_fn!(flatten)));
    ctx.declare_func("index", two(hcl_fn!(index)));
    ctx.declare_func("keys", one(hcl_fn!(keys)));
    ctx.declare_func("length", one(hcl_fn!(length)));
    ctx.declare_func(
        "lookup",
        FuncDef::builder()
            .params([any.clone(), ParamType::String])
            .variadic_param(any.clone())
            .build(hcl_fn!(lookup)),
    );
    ctx.declare_func("merge", many(hcl_fn!(merge)));
    ctx.declare_func("one", one(hcl_fn!(one_fn)));
    ctx.declare_func(
        "range",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(hcl_fn!(range)),
    );
    ctx.declare_func("reverse", one(hcl_fn!(reverse)));
    ctx.declare_func("setintersection", many(hcl_fn!(setintersection)));
    ctx.declare_func("setproduct", many(hcl_fn!(setproduct)));
    ctx.declare_func("setunion", many(hcl_fn!(setunion)));
    ctx.declare_func(
        "slice",
        FuncDef::new(hcl_fn!(slice), [any, ParamType::Number, ParamType::Number]),
    );
    ctx.declare_func("sort", one(hcl_fn!(sort)));
    ctx.declare_func("sum", one(hcl_fn!(sum)));
    ctx.declare_func("transpose", one(hcl_fn!(transpose)));
    ctx.declare_func("values", one(hcl_fn!(values)));
    ctx.declare_func("zipmap", two(hcl_fn!(zipmap)));
}

/// As cty's: a null element makes the result false.
fn alltrue(a: FuncArgs) -> FnResult {
    let mut all = true;
    for v in array(&a[0])? {
        if v.is_null() {
            return Ok(Value::Bool(false));
        }
        all &= boolean(v)?;
    }
    Ok(Value::Bool(all))
}

/// As cty's: null elements are skipped.
fn anytrue(a: FuncArgs) -> FnResult {
    let mut any = false;
    for v in array(&a[0])?.iter().filter(|v| !v.is_null()) {
        any |= boolean(v)?;
    }
    Ok(Value::Bool(any))
}

fn chunklist(a: FuncArgs) -> FnResult {
    let list = array(&a[0])?;
    let size = integer(&a[1])?;
    if size < 0 {
        return Err(FnError::Negative("the chunk size"));
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(list.clone())]));
    }
    Ok(Value::Array(
        list.chunks(size as usize)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

fn coalesce(a: FuncArgs) -> FnResult {
    a.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or(FnError::NothingToCoalesce)
}

fn coalescelist(a: FuncArgs) -> FnResult {
    for v in a.iter() {
        if !array(v)?.is_empty() {
            return Ok(v.clone());
        }
    }
    Err(FnError::NoNonEmptyList)
}

fn compact(a: FuncArgs) -> FnResult {
    Ok(Value::Array(
        array(&a[0])?
            .iter()
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .cloned()
            .collect(),
    ))
}

fn concat(a: FuncArgs) -> FnResult {
    let mut out = Vec::new();
    for v in a.iter() {
        out.extend(array(v)?.iter().cloned());
    }
    Ok(Value::Array(out))
}

fn contains(a: FuncArgs) -> FnResult {
    Ok(Value::Bool(array(&a[0])?.contains(&a[1])))
}

fn dedup(items: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in items {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn distinct(a: FuncArgs) -> FnResult {
    Ok(Value::Array(dedup(array(&a[0])?.iter().cloned())))
}

fn element(a: FuncArgs) -> FnResult {
    let list = array(&a[0])?;
    let i = integer(&a[1])?;
    if list.is_empty() {
        return Err(FnError::EmptyList("use element() on"));
    }
    if i < 0 {
        return Err(FnError::Negative("the index"));
    }
    Ok(list[(i as usize) % list.len()].clone())
}

fn flatten_into(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten_into(i, out)),
        other => out.push(other.clone()),
    }
}

fn flatten(a: FuncArgs) -> FnResult {
    let mut out = Vec::new();
    for v in array(&a[0])? {
        flatten_into(v, &mut out);
    }
    Ok(Value::Array(out))
}

fn index(a: FuncArgs) -> FnResult {
    array(&a[0])?
        .iter()
        .position(|v| v == &a[1])
        .map(|i| Value::from(i as u64))
        .ok_or_else(|| FnError::NotInList(a[1].clone()))
}

fn sorted_entries(v: &Value) -> Result<Vec<(&String, &Value)>, FnError> {
    let mut entries: Vec<_> = object(v)?.iter().collect();
    entries.sort_by(|x, y| x.0.cmp(y.0));
    Ok(entries)
}

fn keys(a: FuncArgs) -> FnResult {
    Ok(Value::Array(
        sorted_entries(&a[0])?
            .into_iter()
            .map(|(k, _)| Value::from(k.as_str()))
            .collect(),
    ))
}

fn values(a: FuncArgs) -> FnResult {
    Ok(Value::Array(
        sorted_entries(&a[0])?
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect(),
    ))
}

fn length(a: FuncArgs) -> FnResult {
    let n = match &a[0] {
        // cty counts grapheme clusters ("noe\u0308l" is 4), not code points.
        Value::String(s) => s.graphemes(true).count(),
        Value::Array(items) => items.len(),
        Value::Object(obj) => obj.len(),
        other => return Err(FnError::NoLength(other.clone())),
    };
    Ok(Value::from(n as u64))
}

fn lookup(a: FuncArgs) -> FnResult {
    let map = object(&a[0])?;
    let key = a[1].as_str().unwrap_or_default();
    match (map.get(key), a.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(FnError::NoSuchKey(key.to_owned())),
    }
}

/// Terraform's `one` (not in Packer's list; templates shared with Terraform use it).
fn one_fn(a: FuncArgs) -> FnResult {
    match array(&a[0])?.as_slice() {
        [] => Ok(Value::Null),
        [only] => Ok(only.clone()),
        more => Err(FnError::MoreThanOne(more.len())),
    }
}

fn merge(a: FuncArgs) -> FnResult {
    let mut out = hcl::Map::new();
    for v in a.iter().filter(|v| !v.is_null()) {
        for (k, v) in object(v)? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

fn range(a: FuncArgs) -> FnResult {
    let n: Vec<f64> = a.iter().map(number).collect::<Result<_, _>>()?;
    let (start, end, step) = match n.as_slice() {
        [end] => (0.0, *end, 1.0),
        [start, end] => (*start, *end, if start <= end { 1.0 } else { -1.0 }),
        [start, end, step] => (*start, *end, *step),
        _ => return Err(FnError::Arity("range() takes one, two or three numbers")),
    };
    if step == 0.0 {
        return Err(FnError::ZeroStep);
    }
    if (step > 0.0 && start > end) || (step < 0.0 && start < end) {
        return Err(FnError::StepAwayFromEnd);
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        if out.len() >= 1024 {
            return Err(FnError::RangeTooLong);
        }
        out.push(num(x)?);
        x += step;
    }
    Ok(Value::Array(out))
}

fn reverse(a: FuncArgs) -> FnResult {
    Ok(Value::Array(array(&a[0])?.iter().rev().cloned().collect()))
}

fn lists(a: &FuncArgs) -> Result<Vec<&Vec<Value>>, FnError> {
    a.iter().map(array).collect()
}

fn setintersection(a: FuncArgs) -> FnResult {
    let lists = lists(&a)?;
    let Some((first, rest)) = lists.split_first() else {
        return Err(FnError::Arity("setintersection() needs at least one set"));
    };
    Ok(Value::Array(dedup(
        first
            .iter()
            .filter(|v| rest.iter().all(|l| l.contains(v)))
            .cloned(),
    )))
}

fn setunion(a: FuncArgs) -> FnResult {
    Ok(Value::Array(dedup(
        lists(&a)?.into_iter().flatten().cloned(),
    )))
}

fn setproduct(a: FuncArgs) -> FnResult {
    let lists = lists(&a)?;
    if lists.len() < 2 {
        return Err(FnError::Arity("setproduct() needs at least two sets"));
    }
    let rows_wanted = lists
        .iter()
        .try_fold(1usize, |n, l| n.checked_mul(l.len()))
        .filter(|&n| n <= MAX_ELEMENTS);
    if rows_wanted.is_none() {
        let sizes: Vec<String> = lists.iter().map(|l| l.len().to_string()).collect();
        return Err(FnError::ProductTooLarge {
            sizes: sizes.join(" × "),
        });
    }
    let mut rows: Vec<Vec<Value>> = vec![Vec::new()];
    for list in lists {
        rows = rows
            .into_iter()
            .flat_map(|row| {
                list.iter().map(move |v| {
                    let mut r = row.clone();
                    r.push(v.clone());
                    r
                })
            })
            .collect();
    }
    Ok(Value::Array(rows.into_iter().map(Value::Array).collect()))
}

fn slice(a: FuncArgs) -> FnResult {
    let list = array(&a[0])?;
    let (start, end) = (integer(&a[1])?, integer(&a[2])?);
    if start < 0 || end < start || end as usize > list.len() {
        return Err(FnError::SliceBounds {
            start,
            end,
            len: list.len(),
        });
    }
    Ok(Value::Array(list[start as usize..end as usize].to_vec()))
}

fn sort(a: FuncArgs) -> FnResult {
    let mut items: Vec<String> = array(&a[0])?
        .iter()
        .map(to_string)
        .collect::<Result<_, _>>()?;
    items.sort();
    Ok(Value::Array(items.into_iter().map(Value::from).collect()))
}

fn sum(a: FuncArgs) -> FnResult {
    let list = array(&a[0])?;
    if list.is_empty() {
        return Err(FnError::EmptyList("sum"));
    }
    num(list.iter().map(number).sum::<Result<f64, _>>()?)
}

fn transpose(a: FuncArgs) -> FnResult {
    let mut out: hcl::Map<String, Value> = hcl::Map::new();
    for (k, v) in sorted_entries(&a[0])? {
        for item in array(v)? {
            let key = to_string(item)?;
            if let Value::Array(list) = out.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                list.push(Value::from(k.as_str()));
            }
        }
    }
    out.sort_keys();
    Ok(Value::Object(out))
}

fn zipmap(a: FuncArgs) -> FnResult {
    let (keys, values) = (array(&a[0])?, array(&a[1])?);
    if keys.len() != values.len() {
        return Err(FnError::ZipmapLengths {
            keys: keys.len(),
            values: values.len(),
        });
    }
    let mut out = hcl::Map::new();
    for (k, v) in keys.iter().zip(values) {
        out.insert(to_string(k)?, v.clone());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, json, ok};
    use hcl::Value;

    #[test]
    fn list_functions() {
        assert_eq!(ok("alltrue([true, \"true\"])"), Value::Bool(true));
        assert_eq!(ok("anytrue([])"), Value::Bool(false));
        // go-cty's stdlib collection tests: a null element makes alltrue false and is
        // skipped by anytrue.
        assert_eq!(ok("alltrue([true, null])"), Value::Bool(false));
        assert_eq!(ok("anytrue([null, true])"), Value::Bool(true));
        assert_eq!(ok("anytrue([null])"), Value::Bool(false));
        assert_eq!(json("chunklist([1, 2, 3], 2)"), "[[1,2],[3]]");
        assert_eq!(json(r#"coalesce(null, "", "x")"#), r#""x""#);
        assert_eq!(json("coalescelist([], [1])"), "[1]");
        assert_eq!(json(r#"compact(["a", "", null, "b"])"#), r#"["a","b"]"#);
        assert_eq!(json("concat([1], [], [2, 3])"), "[1,2,3]");
        assert_eq!(ok(r#"contains(["a"], "a")"#), Value::Bool(true));
        assert_eq!(json("distinct([1, 2, 1])"), "[1,2]");
        assert_eq!(ok(r#"element(["a", "b"], 3)"#), Value::from("b"));
        assert_eq!(json("flatten([[1, [2]], 3])"), "[1,2,3]");
        assert_eq!(ok(r#"index(["a", "b"], "b")"#), Value::from(1));
        assert!(eval(r#"index(["a"], "z")"#).is_err());
        assert_eq!(ok(r#"length("héllo")"#), Value::from(5));
        assert_eq!(json("range(3)"), "[0,1,2]");
        assert_eq!(json("one([])"), "null");
        assert_eq!(json(r#"one(["x"])"#), r#""x""#);
        assert!(eval("one([1, 2])").is_err());
        assert_eq!(json("range(5, 1, -2)"), "[5,3]");
        assert!(eval("range(1, 5, -1)").is_err());
        assert_eq!(json("reverse([1, 2])"), "[2,1]");
        assert_eq!(json("slice([1, 2, 3, 4], 1, 3)"), "[2,3]");
        assert!(eval("slice([1], 0, 2)").is_err());
        assert_eq!(json(r#"sort(["b", "a", 10])"#), r#"["10","a","b"]"#);
        assert_eq!(ok("sum([1, 2.5])"), ok("3.5"));
    }

    #[test]
    fn set_functions() {
        assert_eq!(json("setintersection([1, 2, 3], [3, 2])"), "[2,3]");
        assert_eq!(json("setunion([1, 2], [2, 3])"), "[1,2,3]");
        assert_eq!(
            json(r#"setproduct(["a", "b"], [1, 2])"#),
            r#"[["a",1],["a",2],["b",1],["b",2]]"#
        );
    }

    #[test]
    fn map_functions() {
        assert_eq!(json("keys({b = 1, a = 2})"), r#"["a","b"]"#);
        assert_eq!(json("values({b = 1, a = 2})"), "[2,1]");
        assert_eq!(ok(r#"lookup({a = 1}, "b", 7)"#), Value::from(7));
        assert!(eval(r#"lookup({a = 1}, "b")"#).is_err());
        assert_eq!(json("merge({a = 1, b = 1}, {b = 2})"), r#"{"a":1,"b":2}"#);
        assert_eq!(
            json(r#"transpose({a = ["x", "y"], b = ["x"]})"#),
            r#"{"x":["a","b"],"y":["a"]}"#
        );
        assert_eq!(json(r#"zipmap(["a", "b"], [1, 2])"#), r#"{"a":1,"b":2}"#);
        assert!(eval(r#"zipmap(["a"], [])"#).is_err());
    }
}
