//! Variable type constraints (`string`, `list(map(number))`, `object({a = optional(string, "x")})`,
//! `any`…) and the conversions HCL applies when a value is given for a typed variable.

use hcl::expr::{Expression, ObjectKey};
use hcl::{Number, Value};
use std::fmt;

/// Why a type expression or a value's conversion to a type failed: a message for the template's
/// author (it is shown in a diagnostic at the variable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(pub String);

impl From<String> for TypeError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for TypeError {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A type constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    /// Any value, unconverted.
    Any,
    /// A string.
    String,
    /// A number.
    Number,
    /// A boolean.
    Bool,
    /// A list of one element type.
    List(Box<Type>),
    /// A set (kept as a list with duplicates removed).
    Set(Box<Type>),
    /// A map of one element type.
    Map(Box<Type>),
    /// A fixed-length list with per-element types.
    Tuple(Vec<Type>),
    /// An object with typed attributes.
    Object(Vec<ObjectAttr>),
}

/// One attribute of an object type.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectAttr {
    /// Attribute name.
    pub name: String,
    /// Its type.
    pub ty: Type,
    /// `optional(…)`: may be absent.
    pub optional: bool,
    /// `optional(type, default)`'s default.
    pub default: Option<Value>,
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Any => f.write_str("any"),
            Type::String => f.write_str("string"),
            Type::Number => f.write_str("number"),
            Type::Bool => f.write_str("bool"),
            Type::List(t) => write!(f, "list({t})"),
            Type::Set(t) => write!(f, "set({t})"),
            Type::Map(t) => write!(f, "map({t})"),
            Type::Tuple(ts) => {
                f.write_str("tuple([")?;
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
            Type::Object(attrs) => {
                f.write_str("object({")?;
                for (i, a) in attrs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    if a.optional {
                        write!(f, "{} = optional({})", a.name, a.ty)?;
                    } else {
                        write!(f, "{} = {}", a.name, a.ty)?;
                    }
                }
                f.write_str("})")
            }
        }
    }
}

/// Read a type constraint from the `type = …` expression of a variable block.
pub fn parse_type(expr: &Expression) -> Result<Type, TypeError> {
    match expr {
        Expression::Variable(v) => match v.as_str() {
            "any" => Ok(Type::Any),
            "string" => Ok(Type::String),
            "number" => Ok(Type::Number),
            "bool" => Ok(Type::Bool),
            "list" | "map" | "set" => Ok(collection(v.as_str(), Type::Any)),
            other => Err(TypeError(format!("unknown type \"{other}\": use string, number, bool, list(…), map(…), set(…), object({{…}}), tuple([…]) or any"))),
        },
        Expression::Parenthesis(e) => parse_type(e),
        // HCL's JSON syntax writes types as strings.
        Expression::String(s) => match s.parse::<Expression>() {
            Ok(e @ (Expression::Variable(_) | Expression::FuncCall(_))) => parse_type(&e),
            _ => Err(TypeError(format!("{s:?} is not a type"))),
        },
        Expression::FuncCall(call) => {
            let name = call.name.name.as_str();
            let arg = |n: usize| -> Result<&Expression, TypeError> {
                if call.args.len() != n {
                    return Err(TypeError(format!("{name}(…) takes exactly {n} argument(s)")));
                }
                Ok(&call.args[0])
            };
            match name {
                "list" | "map" | "set" => Ok(collection(name, parse_type(arg(1)?)?)),
                "tuple" => match arg(1)? {
                    Expression::Array(items) => Ok(Type::Tuple(items.iter().map(parse_type).collect::<Result<_, _>>()?)),
                    _ => Err(TypeError("tuple(…) takes a list of types: tuple([string, number])".to_owned())),
                },
                "object" => match arg(1)? {
                    Expression::Object(obj) => {
                        let mut attrs = Vec::new();
                        for (k, v) in obj {
                            let name = match k {
                                ObjectKey::Identifier(id) => id.to_string(),
                                ObjectKey::Expression(Expression::String(s)) => s.clone(),
                                _ => return Err(TypeError("object attribute names must be plain names".to_owned())),
                            };
                            attrs.push(object_attr(name, v)?);
                        }
                        Ok(Type::Object(attrs))
                    }
                    _ => Err(TypeError("object(…) takes an object of types: object({ name = string })".to_owned())),
                },
                "optional" => Err(TypeError("optional(…) is only allowed for attributes of object(…)".to_owned())),
                other => Err(TypeError(format!("unknown type constructor \"{other}\""))),
            }
        }
        _ => Err(TypeError("a type constraint must be a type such as string or list(string), not a value".to_owned())),
    }
}

fn collection(kind: &str, t: Type) -> Type {
    match kind {
        "list" => Type::List(Box::new(t)),
        "set" => Type::Set(Box::new(t)),
        _ => Type::Map(Box::new(t)),
    }
}

fn object_attr(name: String, v: &Expression) -> Result<ObjectAttr, TypeError> {
    if let Expression::FuncCall(call) = v {
        if call.name.name.as_str() == "optional" {
            let ty = parse_type(call.args.first().ok_or("optional(…) needs a type")?)?;
            let default = match call.args.get(1) {
                Some(e) => Some(literal(e)?),
                None => None,
            };
            let default = default.map(|d| convert(d, &ty)).transpose()?;
            return Ok(ObjectAttr {
                name,
                ty,
                optional: true,
                default,
            });
        }
    }
    Ok(ObjectAttr {
        name,
        ty: parse_type(v)?,
        optional: false,
        default: None,
    })
}

/// The value of a literal expression (no variables or functions).
fn literal(e: &Expression) -> Result<Value, TypeError> {
    super::functions::evaluate_literal(e).map_err(|e| {
        TypeError(format!(
            "default of optional(…) must be a literal value: {e}"
        ))
    })
}

/// Convert `v` to type `ty` the way HCL does for variable values; the error says what was
/// expected.
pub fn convert(v: Value, ty: &Type) -> Result<Value, TypeError> {
    if v.is_null() {
        return Ok(v);
    }
    let wanted = || format!("{ty} required, got {}", describe(&v));
    match ty {
        Type::Any => Ok(v),
        Type::String => match &v {
            Value::String(_) => Ok(v),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(wanted().into()),
        },
        Type::Number => match &v {
            Value::Number(_) => Ok(v),
            Value::String(s) => parse_number(s)
                .map(Value::Number)
                .ok_or_else(|| TypeError(format!("a number is required, got string {s:?}"))),
            _ => Err(wanted().into()),
        },
        Type::Bool => match &v {
            Value::Bool(_) => Ok(v),
            Value::String(s) if s == "true" => Ok(Value::Bool(true)),
            Value::String(s) if s == "false" => Ok(Value::Bool(false)),
            _ => Err(wanted().into()),
        },
        Type::List(t) | Type::Set(t) => {
            let Value::Array(items) = v else {
                return Err(wanted().into());
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let c = convert(item, t).map_err(|e| format!("element {i}: {e}"))?;
                if !(matches!(ty, Type::Set(_)) && out.contains(&c)) {
                    out.push(c);
                }
            }
            Ok(Value::Array(out))
        }
        Type::Tuple(ts) => {
            let Value::Array(items) = v else {
                return Err(wanted().into());
            };
            if items.len() != ts.len() {
                return Err(TypeError(format!(
                    "{ty} required, got a list of {} element(s)",
                    items.len()
                )));
            }
            items
                .into_iter()
                .zip(ts)
                .enumerate()
                .map(|(i, (item, t))| {
                    convert(item, t).map_err(|e| TypeError(format!("element {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        Type::Map(t) => {
            let Value::Object(map) = v else {
                return Err(wanted().into());
            };
            let mut out = hcl::Map::new();
            for (k, item) in map {
                let c = convert(item, t).map_err(|e| format!("element \"{k}\": {e}"))?;
                out.insert(k, c);
            }
            Ok(Value::Object(out))
        }
        Type::Object(attrs) => {
            let Value::Object(mut map) = v else {
                return Err(wanted().into());
            };
            let mut out = hcl::Map::new();
            for a in attrs {
                match map.shift_remove(&a.name) {
                    Some(item) if !item.is_null() => {
                        let c = convert(item, &a.ty)
                            .map_err(|e| format!("attribute \"{}\": {e}", a.name))?;
                        out.insert(a.name.clone(), c);
                    }
                    _ if a.optional => {
                        out.insert(a.name.clone(), a.default.clone().unwrap_or(Value::Null));
                    }
                    Some(null) => {
                        out.insert(a.name.clone(), null);
                    }
                    None => return Err(TypeError(format!("attribute \"{}\" is required", a.name))),
                }
            }
            Ok(Value::Object(out))
        }
    }
}

fn parse_number(s: &str) -> Option<Number> {
    let t = s.trim();
    if let Ok(i) = t.parse::<i64>() {
        return Some(Number::from(i));
    }
    t.parse::<f64>().ok().and_then(Number::from_f64)
}

/// A short description of a value's type for messages.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn ty(s: &str) -> Type {
        parse_type(&s.parse::<Expression>().unwrap()).unwrap()
    }

    #[test]
    fn parses_and_prints_types() {
        for s in [
            "string",
            "list(map(number))",
            "tuple([string, bool])",
            "object({a = string, b = optional(number)})",
        ] {
            assert_eq!(ty(s).to_string(), s);
        }
        assert!(parse_type(&"strin".parse::<Expression>().unwrap()).is_err());
    }

    #[test]
    fn converts_like_hcl() {
        assert_eq!(
            convert(Value::from("12"), &Type::Number).unwrap(),
            Value::from(12)
        );
        assert_eq!(
            convert(Value::from(12), &Type::String).unwrap(),
            Value::from("12")
        );
        assert_eq!(
            convert(Value::from("x"), &Type::Number).unwrap_err().0,
            "a number is required, got string \"x\""
        );
        let t = ty("object({a = string, b = optional(number, 5)})");
        let v: Value = "{ a = 1 }"
            .parse::<Expression>()
            .unwrap()
            .evaluate(&hcl::eval::Context::new())
            .unwrap();
        let c = convert(v, &t).unwrap();
        let c = c.as_object().unwrap();
        assert_eq!(c["a"], Value::from("1"));
        assert_eq!(c["b"], Value::from(5));
        let e = convert(Value::Object(hcl::Map::new()), &t).unwrap_err();
        assert_eq!(e.0, "attribute \"a\" is required");
        assert_eq!(
            convert(
                Value::Array(vec![Value::from(true), Value::from(vec![1])]),
                &ty("list(string)")
            )
            .unwrap_err()
            .0,
            "element 1: string required, got list"
        );
    }
}
