//! Type conversion: `convert(value, type)` with HCL type expressions (evaluated lazily by
//! `super::evaluate`, since `string` or `list(number)` are not values), and the `tostring`,
//! `tonumber`, `tobool`, `tolist`, `toset`, `tomap` shorthands.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::expr::{Expression, ObjectKey};
use hcl::Value;

use super::args::{num, number, FnResult};
use super::FnError;

pub(super) fn register(ctx: &mut Context) {
    let one = |f| FuncDef::new(f, [ParamType::Any]);
    ctx.declare_func("tostring", one(hcl_fn!(tostring)));
    ctx.declare_func("tonumber", one(hcl_fn!(tonumber)));
    ctx.declare_func("tobool", one(hcl_fn!(tobool)));
    ctx.declare_func("tolist", one(hcl_fn!(tolist)));
    ctx.declare_func("toset", one(hcl_fn!(toset)));
    ctx.declare_func("tomap", one(hcl_fn!(tomap)));
}

/// A primitive value as a string, the way HCL converts it (`3`, `1.5`, `true`).
pub(super) fn to_string(v: &Value) -> Result<String, FnError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(FnError::NullString),
        other => Err(FnError::Type {
            expected: "a string",
            got: other.clone(),
        }),
    }
}

fn tostring(a: FuncArgs) -> FnResult {
    TypeExpr::String.convert(a[0].clone())
}

fn tonumber(a: FuncArgs) -> FnResult {
    TypeExpr::Number.convert(a[0].clone())
}

fn tobool(a: FuncArgs) -> FnResult {
    TypeExpr::Bool.convert(a[0].clone())
}

fn tolist(a: FuncArgs) -> FnResult {
    TypeExpr::List(Box::new(TypeExpr::Any)).convert(a[0].clone())
}

fn toset(a: FuncArgs) -> FnResult {
    TypeExpr::Set(Box::new(TypeExpr::Any)).convert(a[0].clone())
}

fn tomap(a: FuncArgs) -> FnResult {
    TypeExpr::Map(Box::new(TypeExpr::Any)).convert(a[0].clone())
}

fn cannot(value: Value, target: &'static str) -> FnError {
    FnError::Convert { value, target }
}

/// An HCL type constraint such as `list(object({ name = string }))`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TypeExpr {
    Any,
    String,
    Number,
    Bool,
    List(Box<TypeExpr>),
    Set(Box<TypeExpr>),
    Map(Box<TypeExpr>),
    Tuple(Vec<TypeExpr>),
    Object(Vec<(String, TypeExpr)>),
}

impl TypeExpr {
    pub(super) fn parse(expr: &Expression) -> Result<TypeExpr, FnError> {
        match expr {
            Expression::Variable(v) => match v.as_str() {
                "any" => Ok(TypeExpr::Any),
                "string" => Ok(TypeExpr::String),
                "number" => Ok(TypeExpr::Number),
                "bool" => Ok(TypeExpr::Bool),
                other => Err(FnError::UnknownType(other.to_owned())),
            },
            Expression::FuncCall(call) if call.args.len() == 1 => {
                let arg = &call.args[0];
                match call.name.name.as_str() {
                    "list" => Ok(TypeExpr::List(Box::new(TypeExpr::parse(arg)?))),
                    "set" => Ok(TypeExpr::Set(Box::new(TypeExpr::parse(arg)?))),
                    "map" => Ok(TypeExpr::Map(Box::new(TypeExpr::parse(arg)?))),
                    "tuple" => match arg {
                        Expression::Array(items) => Ok(TypeExpr::Tuple(
                            items
                                .iter()
                                .map(TypeExpr::parse)
                                .collect::<Result<_, _>>()?,
                        )),
                        _ => Err(FnError::TupleTypeSyntax),
                    },
                    "object" => match arg {
                        Expression::Object(obj) => {
                            let mut attrs = Vec::new();
                            for (k, v) in obj {
                                let name = match k {
                                    ObjectKey::Identifier(id) => id.to_string(),
                                    ObjectKey::Expression(Expression::String(s)) => s.clone(),
                                    other => {
                                        return Err(FnError::AttributeName(format!("{other:?}")))
                                    }
                                };
                                attrs.push((name, TypeExpr::parse(v)?));
                            }
                            Ok(TypeExpr::Object(attrs))
                        }
                        _ => Err(FnError::ObjectTypeSyntax),
                    },
                    other => Err(FnError::UnknownTypeConstructor(other.to_owned())),
                }
            }
            _ => Err(FnError::NotAType),
        }
    }

    pub(super) fn convert(&self, value: Value) -> FnResult {
        if value.is_null() {
            return Ok(Value::Null);
        }
        match self {
            TypeExpr::Any => Ok(value),
            TypeExpr::String => match value {
                Value::Array(_) | Value::Object(_) => Err(cannot(value, "a string")),
                v => Ok(to_string(&v)?.into()),
            },
            TypeExpr::Number => match number(&value) {
                Ok(n) => num(n),
                Err(_) => Err(cannot(value, "a number")),
            },
            TypeExpr::Bool => match value {
                Value::Bool(_) => Ok(value),
                Value::String(s) if s == "true" => Ok(Value::Bool(true)),
                Value::String(s) if s == "false" => Ok(Value::Bool(false)),
                v => Err(cannot(v, "a bool")),
            },
            TypeExpr::List(elem) | TypeExpr::Set(elem) => {
                let Value::Array(items) = value else {
                    return Err(cannot(value, "a list"));
                };
                let mut out: Vec<Value> = Vec::with_capacity(items.len());
                for item in items {
                    let item = elem.convert(item)?;
                    if matches!(self, TypeExpr::Set(_)) && out.contains(&item) {
                        continue;
                    }
                    out.push(item);
                }
                Ok(Value::Array(out))
            }
            TypeExpr::Map(elem) => {
                let Value::Object(obj) = value else {
                    return Err(cannot(value, "a map"));
                };
                obj.into_iter()
                    .map(|(k, v)| Ok((k, elem.convert(v)?)))
                    .collect::<Result<hcl::Map<_, _>, FnError>>()
                    .map(Value::Object)
            }
            TypeExpr::Tuple(types) => {
                let Value::Array(items) = value else {
                    return Err(cannot(value, "a tuple"));
                };
                if items.len() != types.len() {
                    return Err(FnError::TupleLength {
                        expected: types.len(),
                        got: items.len(),
                    });
                }
                items
                    .into_iter()
                    .zip(types)
                    .map(|(v, t)| t.convert(v))
                    .collect::<Result<_, _>>()
                    .map(Value::Array)
            }
            TypeExpr::Object(attrs) => {
                let Value::Object(mut obj) = value else {
                    return Err(cannot(value, "an object"));
                };
                let mut out = hcl::Map::new();
                for (name, ty) in attrs {
                    let v = obj
                        .swap_remove(name)
                        .ok_or_else(|| FnError::MissingAttribute(name.clone()))?;
                    out.insert(name.clone(), ty.convert(v)?);
                }
                Ok(Value::Object(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{eval, json, ok};
    use hcl::Value;

    #[test]
    fn to_functions() {
        assert_eq!(ok("tostring(5)"), Value::from("5"));
        assert_eq!(ok("tostring(true)"), Value::from("true"));
        assert_eq!(ok(r#"tonumber("2.5")"#), ok("2.5"));
        assert_eq!(ok(r#"tobool("false")"#), Value::Bool(false));
        assert_eq!(json(r#"toset(["a", "b", "a"])"#), r#"["a","b"]"#);
        assert_eq!(json(r#"tomap({a = 1})"#), r#"{"a":1}"#);
        assert!(eval(r#"tonumber("nine")"#).is_err());
        assert!(eval("tostring([1])").is_err());
    }

    #[test]
    fn convert_with_type_expressions() {
        assert_eq!(json(r#"convert(["1", 2], list(number))"#), "[1,2]");
        assert_eq!(json("convert(3, string)"), r#""3""#);
        assert_eq!(
            json(r#"convert({name = "x", extra = 1}, object({name = string}))"#),
            r#"{"name":"x"}"#
        );
        assert_eq!(
            json(r#"convert(["a", true], tuple([string, string]))"#),
            r#"["a","true"]"#
        );
        assert!(eval("convert({}, object({name = string}))").is_err());
        assert!(eval("convert(1, nonsense)").is_err());
    }
}
