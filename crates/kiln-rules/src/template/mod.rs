//! Go templates in alert labels and annotations, as Prometheus expands them.
//!
//! A template sees `.Labels`, `.ExternalLabels`, `.ExternalURL` and `.Value`, also
//! bound to `$labels`, `$externalLabels`, `$externalURL` and `$value`, plus
//! Prometheus's template functions (see [`funcs`]). Templates run on the `gotmpl`
//! crate with two adjustments so output matches Prometheus:
//! - a float printed by an action (`{{ $value }}`) is written as Go's `fmt` writes a
//!   float64 (`1.234567e+06`, `+Inf`), not as Rust's `Display` would;
//! - a function name the template uses but nobody defines is an error when the rule
//!   file is loaded, as Go reports it at parse time, not when the alert first fires.

mod format;
mod funcs;

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::parse::{ActionNode, BranchNode, CommandNode, Expr, ListNode, Node, PipeNode};
use gotmpl::{Template, Value};

pub(crate) use funcs::query_escape;
pub use funcs::{QueryFn, QuerySample};

/// Name of the main template among a parsed template's definitions.
const MAIN: &str = "__alert";
/// The function appended to every printing action (see the module docs).
const PRINT_FN: &str = "__kiln_print";
/// What Prometheus puts in front of every alert template.
const PREAMBLE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}\
{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// The data an alert template is expanded with.
#[derive(Debug, Clone, Default)]
pub struct TemplateData {
    /// The alert's labels (the sample's labels without `__name__`).
    pub labels: BTreeMap<String, String>,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    pub value: f64,
}

impl TemplateData {
    fn to_value(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert(Arc::from("Labels"), string_map(&self.labels));
        m.insert(
            Arc::from("ExternalLabels"),
            string_map(&self.external_labels),
        );
        m.insert(
            Arc::from("ExternalURL"),
            Value::String(self.external_url.as_str().into()),
        );
        m.insert(Arc::from("Value"), Value::Float(self.value));
        Value::Map(Arc::new(m))
    }
}

pub(crate) fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(Arc::new(
        m.iter()
            .map(|(k, v)| (Arc::from(k.as_str()), Value::String(v.as_str().into())))
            .collect(),
    ))
}

/// Checks that `text` parses as a template of the alert `alert` and calls only known
/// functions. Errors read as Prometheus's: `template: __alert_<alert>:<line>: <what>`.
pub(crate) fn check(text: &str, alert: &str) -> Result<(), String> {
    if !text.contains("{{") {
        return Ok(());
    }
    parse(text, &funcs::function_map(&funcs::Context::default()))
        .map(|_| ())
        .map_err(|e| match e.strip_prefix(&format!("template: {MAIN}:")) {
            Some(rest) => format!("template: {MAIN}_{alert}:{rest}"),
            None => format!("template: {MAIN}_{alert}: {e}"),
        })
}

/// Expands `text` with `data` at evaluation time `now_s` (Unix seconds, what `now`
/// returns). `query` answers the `query` template function.
pub fn expand(
    text: &str,
    data: &TemplateData,
    now_s: f64,
    query: Option<QueryFn>,
) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_owned());
    }
    let ctx = funcs::Context {
        query,
        external_url: data.external_url.clone(),
        now: now_s,
    };
    let tmpl = parse(text, &funcs::function_map(&ctx))?;
    if tmpl.lookup(MAIN).is_none() {
        // Nothing but the preamble's declarations: the template prints nothing.
        return Ok(String::new());
    }
    tmpl.execute_template_to_string(MAIN, &data.to_value())
        .map_err(|e| format!("error executing template: {e}"))
}

/// Parses the template (with the preamble) and rewrites every definition's printing
/// actions; fails on undefined functions.
fn parse(text: &str, funcs: &gotmpl::FuncMap) -> Result<Template, String> {
    let source = format!("{PREAMBLE}{text}");
    let mut tmpl = Template::new(MAIN)
        .funcs(funcs.clone())
        .parse(&source)
        .map_err(|e| match e {
            // Go reports the line only; the column would count the preamble too.
            gotmpl::TemplateError::Parse { line, message, .. }
            | gotmpl::TemplateError::Lex { line, message, .. } => {
                format!("template: {MAIN}:{line}: {message}")
            }
            other => other.to_string(),
        })?;
    let names: Vec<String> = tmpl.templates().iter().map(|s| s.to_string()).collect();
    for name in names {
        let Some(tree) = tmpl.lookup(&name) else {
            continue;
        };
        let mut tree = tree.clone();
        rewrite_list(&mut tree, funcs)?;
        tmpl = tmpl.add_parse_tree(&name, tree);
    }
    Ok(tmpl)
}

fn rewrite_list(list: &mut ListNode, funcs: &gotmpl::FuncMap) -> Result<(), String> {
    for node in &mut list.nodes {
        match node {
            Node::List(l) => rewrite_list(l, funcs)?,
            Node::Action(ActionNode { pos, pipe }) => {
                check_pipe(pipe, funcs)?;
                if pipe.decl.is_empty() {
                    pipe.commands.push(CommandNode {
                        pos: *pos,
                        args: vec![Expr::Identifier(*pos, PRINT_FN.into())],
                    });
                }
            }
            Node::If(b) | Node::Range(b) | Node::With(b) => rewrite_branch(b, funcs)?,
            Node::Template(t) => {
                if let Some(pipe) = &t.pipe {
                    check_pipe(pipe, funcs)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn rewrite_branch(b: &mut BranchNode, funcs: &gotmpl::FuncMap) -> Result<(), String> {
    check_pipe(&b.pipe, funcs)?;
    rewrite_list(&mut b.body, funcs)?;
    if let Some(e) = &mut b.else_body {
        rewrite_list(e, funcs)?;
    }
    Ok(())
}

fn check_pipe(pipe: &PipeNode, funcs: &gotmpl::FuncMap) -> Result<(), String> {
    for cmd in &pipe.commands {
        for arg in &cmd.args {
            check_expr(arg, funcs)?;
        }
    }
    Ok(())
}

fn check_expr(e: &Expr, funcs: &gotmpl::FuncMap) -> Result<(), String> {
    match e {
        Expr::Identifier(_, name)
            if !funcs.contains_key(name.as_str()) && !funcs::is_builtin(name) =>
        {
            return Err(format!("function {name:?} not defined"));
        }
        Expr::Pipe(_, p) => check_pipe(p, funcs)?,
        Expr::Chain(_, inner, _) => check_expr(inner, funcs)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
