//! Finding what an expression refers to (`local.x`, `data.null.y`, `var.z`), to evaluate locals
//! and data sources in dependency order and to report cycles.

use hcl::expr::{Expression, ObjectKey, Operation, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};

/// Every traversal in `expr` as its root name followed by the attribute names that follow it
/// directly (`local.a.b[0]` → `["local", "a", "b"]`).
pub fn references(expr: &Expression) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    walk(expr, &mut out);
    out
}

fn walk(expr: &Expression, out: &mut Vec<Vec<String>>) {
    match expr {
        Expression::Variable(v) => out.push(vec![v.to_string()]),
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                let mut path = vec![v.to_string()];
                for op in &t.operators {
                    match op {
                        TraversalOperator::GetAttr(id) => path.push(id.to_string()),
                        _ => break,
                    }
                }
                out.push(path);
            } else {
                walk(&t.expr, out);
            }
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op {
                    walk(e, out);
                }
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| walk(e, out)),
        Expression::Object(obj) => {
            for (k, v) in obj {
                if let ObjectKey::Expression(e) = k {
                    walk(e, out);
                }
                walk(v, out);
            }
        }
        Expression::TemplateExpr(t) => {
            let src = match t.as_ref() {
                TemplateExpr::QuotedString(s) => s.as_str(),
                TemplateExpr::Heredoc(h) => h.template.as_str(),
            };
            if let Ok(tpl) = src.parse::<Template>() {
                walk_template(&tpl, out);
            }
        }
        Expression::FuncCall(f) => f.args.iter().for_each(|e| walk(e, out)),
        Expression::Parenthesis(e) => walk(e, out),
        Expression::Conditional(c) => {
            walk(&c.cond_expr, out);
            walk(&c.true_expr, out);
            walk(&c.false_expr, out);
        }
        Expression::Operation(op) => match op.as_ref() {
            Operation::Unary(u) => walk(&u.expr, out),
            Operation::Binary(b) => {
                walk(&b.lhs_expr, out);
                walk(&b.rhs_expr, out);
            }
        },
        Expression::ForExpr(f) => {
            walk(&f.collection_expr, out);
            if let Some(k) = &f.key_expr {
                walk(k, out);
            }
            walk(&f.value_expr, out);
            if let Some(c) = &f.cond_expr {
                walk(c, out);
            }
        }
        _ => {}
    }
}

fn walk_template(tpl: &Template, out: &mut Vec<Vec<String>>) {
    for el in tpl.elements() {
        match el {
            Element::Literal(_) => {}
            Element::Interpolation(i) => walk(&i.expr, out),
            Element::Directive(d) => match d.as_ref() {
                Directive::If(i) => {
                    walk(&i.cond_expr, out);
                    walk_template(&i.true_template, out);
                    if let Some(f) = &i.false_template {
                        walk_template(f, out);
                    }
                }
                Directive::For(f) => {
                    walk(&f.collection_expr, out);
                    walk_template(&f.template, out);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references_everywhere() {
        let e: Expression =
            r#"var.a == null ? "${local.b}-x" : upper(data.null.c.output[local.i])"#
                .parse()
                .unwrap();
        let refs = references(&e);
        assert!(refs.contains(&vec!["var".into(), "a".into()]));
        assert!(refs.contains(&vec!["local".into(), "b".into()]));
        assert!(refs.contains(&vec![
            "data".into(),
            "null".into(),
            "c".into(),
            "output".into()
        ]));
        assert!(refs.contains(&vec!["local".into(), "i".into()]));
    }
}
