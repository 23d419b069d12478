//! Collection functions: alltrue, anytrue, chunklist, coalesce, coalescelist, compact, concat,
//! contains, distinct, element, flatten, index, keys, length, lookup, merge, range, reverse,
//! one, setintersection, setproduct, setunion, slice, sort, sum, transpose, values, zipmap.
//! Sets are lists without duplicates, in first-seen order.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value;

use super::args::{array, boolean, integer, num, number, object, FnResult, MAX_ELEMENTS};
use super::conversion::to_string;

pub(super) fn register(ctx: &mut Context) {
    let any = ParamType::Any;
    let one = |f| FuncDef::new(f, [ParamType::Any]);
    let two = |f| FuncDef::new(f, [ParamType::Any, ParamType::Any]);
    let many = |f| FuncDef::builder().variadic_param(ParamType::Any).build(f);
    ctx.declare_func("alltrue", one(alltrue));
    ctx.declare_func("anytrue", one(anytrue));
    ctx.declare_func("chunklist", two(chunklist));
    ctx.declare_func("coalesce", many(coalesce));
    ctx.declare_func("coalescelist", many(coalescelist));
    ctx.declare_func("compact", one(compact));
    ctx.declare_func("concat", many(concat));
    ctx.declare_func("contains", two(contains));
    ctx.declare_func("distinct", one(distinct));
    ctx.declare_func("element", two(element));
    ctx.declare_func("flatten", one(flatten));
    ctx.declare_func("index", two(index));
    ctx.declare_func("keys", one(keys));
    ctx.declare_func("length", one(length));
    ctx.declare_func(
        "lookup",
        FuncDef::builder()
            .params([any.clone(), ParamType::String])
            .variadic_param(any.clone())
            .build(lookup),
    );
    ctx.declare_func("merge", many(merge));
    ctx.declare_func("one", one(one_fn));
    ctx.declare_func(
        "range",
        FuncDef::builder()
            .variadic_param(ParamType::Number)
            .build(range),
    );
    ctx.declare_func("reverse", one(reverse));
    ctx.declare_func("setintersection", many(setintersection));
    ctx.declare_func("setproduct", many(setproduct));
    ctx.declare_func("setunion", many(setunion));
    ctx.declare_func(
        "slice",
        FuncDef::new(slice, [any, ParamType::Number, ParamType::Number]),
    );
    ctx.declare_func("sort", one(sort));
    ctx.declare_func("sum", one(sum));
    ctx.declare_func("transpose", one(transpose));
    ctx.declare_func("values", one(values));
    ctx.declare_func("zipmap", two(zipmap));
}

fn alltrue(a: FuncArgs) -> FnResult {
    let mut all = true;
    for v in array(&a[0])? {
        all &= boolean(v)?;
    }
    Ok(Value::Bool(all))
}

fn anytrue(a: FuncArgs) -> FnResult {
    let mut any = false;
    for v in array(&a[0])? {
        any |= boolean(v)?;
    }
    Ok(Value::Bool(any))
}

fn chunklist(a: FuncArgs) -> FnResult {
    let list = array(&a[0])?;
    let size = integer(&a[1])?;
    if size < 0 {
        return Err("the chunk size must not be negative".into());
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
        .ok_or_else(|| "no non-null, non-empty-string arguments".into())
}

fn coalescelist(a: FuncArgs) -> FnResult {
    for v in a.iter() {
        if !array(v)?.is_empty() {
            return Ok(v.clone());
        }
    }
    Err("no non-empty list arguments".into())
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
        return Err("cannot use element() on an empty list".into());
    }
    if i < 0 {
        return Err("the index must not be negative".into());
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
        .ok_or_else(|| format!("`{}` is not in the list", a[1]))
}

fn sorted_entries(v: &Value) -> Result<Vec<(&String, &Value)>, String> {
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
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(obj) => obj.len(),
        other => return Err(format!("cannot take the length of `{other}`")),
    };
    Ok(Value::from(n as u64))
}

fn lookup(a: FuncArgs) -> FnResult {
    let map = object(&a[0])?;
    let key = a[1].as_str().unwrap_or_default();
    match (map.get(key), a.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!(
            "the map has no key \"{key}\" and no default was given"
        )),
    }
}

/// Terraform's `one` (not in Packer's list; templates shared with Terraform use it).
fn one_fn(a: FuncArgs) -> FnResult {
    match array(&a[0])?.as_slice() {
        [] => Ok(Value::Null),
        [only] => Ok(only.clone()),
        more => Err(format!(
            "one() needs at most one element, got {}",
            more.len()
        )),
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
        _ => return Err("range() takes one, two or three numbers".into()),
    };
    if step == 0.0 {
        return Err("the step of range() must not be zero".into());
    }
    if (step > 0.0 && start > end) || (step < 0.0 && start < end) {
        return Err("the step of range() goes away from the end".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        if out.len() >= 1024 {
            return Err("range() would produce more than 1024 elements".into());
        }
        out.push(num(x)?);
        x += step;
    }
    Ok(Value::Array(out))
}

fn reverse(a: FuncArgs) -> FnResult {
    Ok(Value::Array(array(&a[0])?.iter().rev().cloned().collect()))
}

fn lists(a: &FuncArgs) -> Result<Vec<&Vec<Value>>, String> {
    a.iter().map(array).collect()
}

fn setintersection(a: FuncArgs) -> FnResult {
    let lists = lists(&a)?;
    let Some((first, rest)) = lists.split_first() else {
        return Err("setintersection() needs at least one set".into());
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
        return Err("setproduct() needs at least two sets".into());
    }
    let rows_wanted = lists
        .iter()
        .try_fold(1usize, |n, l| n.checked_mul(l.len()))
        .filter(|&n| n <= MAX_ELEMENTS);
    if rows_wanted.is_none() {
        let sizes: Vec<String> = lists.iter().map(|l| l.len().to_string()).collect();
        return Err(format!(
            "setproduct: the product of sets of {} elements is more than kiln allows (max \
             {MAX_ELEMENTS} elements)",
            sizes.join(" × ")
        ));
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
        return Err(format!(
            "cannot slice [{start}:{end}] from a list of {} elements",
            list.len()
        ));
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
        return Err("cannot sum an empty list".into());
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
        return Err(format!(
            "zipmap() needs as many values as keys ({} keys, {} values)",
            keys.len(),
            values.len()
        ));
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
