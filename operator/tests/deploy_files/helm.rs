//! A renderer for the small subset of Helm's template language that `charts/ecom-operator` uses, so
//! the chart can be checked where there is no `helm` binary: `{{ }}` actions with `{{-`/`-}}`
//! trimming and `/* */` comments; `define`, `if`/`else`, `with`/`else`, `end`; `$var :=`;
//! pipelines of `.Path` lookups, `$`, variables, string and integer literals, `( )` and the
//! functions `include toYaml nindent indent quote default trunc trimSuffix replace contains printf
//! and or not eq gt int`, plus `.Capabilities.APIVersions.Has`. Anything else is an error (keep
//! the templates simple), and so is a lookup of a value that does not exist (a typo), which
//! Helm would render as an empty string.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output(String),
    Assign(String, String),
    If(String, Vec<Node>, Vec<Node>),
    With(String, Vec<Node>, Vec<Node>),
}

/// A chart read from its directory.
pub struct Chart {
    meta: Value,
    values: Value,
    /// Template file name → its parsed body (helpers `_*.tpl` included).
    templates: BTreeMap<String, Vec<Node>>,
    defines: BTreeMap<String, Vec<Node>>,
}

/// One release: its name, namespace, values on top of the chart's, and the API versions the
/// cluster serves (`.Capabilities.APIVersions`).
pub struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub values: Value,
    pub api_versions: &'a [&'a str],
}

impl Chart {
    pub fn load(dir: &Path) -> Result<Self, String> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let yaml = |text: &str, what: &str| -> Result<Value, String> {
            serde_norway::from_str(text).map_err(|e| format!("{what}: {e}"))
        };
        let meta = yaml(&read(&dir.join("Chart.yaml"))?, "Chart.yaml")?;
        let values = yaml(&read(&dir.join("values.yaml"))?, "values.yaml")?;
        let mut templates = BTreeMap::new();
        let mut defines = BTreeMap::new();
        let entries = std::fs::read_dir(dir.join("templates")).map_err(|e| e.to_string())?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let nodes = parse(&read(&path)?, &mut defines).map_err(|e| format!("{name}: {e}"))?;
            templates.insert(name, nodes);
        }
        Ok(Self {
            meta,
            values,
            templates,
            defines,
        })
    }

    /// Every template but the `_` helpers, rendered: file name → text.
    pub fn render(&self, release: &Release) -> Result<BTreeMap<String, String>, String> {
        let mut values = self.values.clone();
        merge(&mut values, &release.values);
        let root = json!({
            "Values": values,
            "Release": {"Name": release.name, "Namespace": release.namespace, "Service": "Helm",
                        "IsInstall": true, "IsUpgrade": false, "Revision": 1},
            "Chart": {"Name": self.meta["name"], "Version": self.meta["version"],
                      "AppVersion": self.meta["appVersion"], "Description": self.meta["description"]},
            "Capabilities": {"APIVersions": release.api_versions},
        });
        let mut out = BTreeMap::new();
        for (name, nodes) in &self.templates {
            if name.starts_with('_') {
                continue;
            }
            let mut ctx = Ctx {
                root: &root,
                defines: &self.defines,
                vars: BTreeMap::new(),
            };
            let mut text = String::new();
            ctx.exec(nodes, &root, &mut text)
                .map_err(|e| format!("{name}: {e}"))?;
            out.insert(name.clone(), text);
        }
        Ok(out)
    }
}

/// Deep merge (objects key by key; anything else replaced), as Helm merges `--set`/`-f` values.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

// ---- parsing ----

enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    loop {
        let Some(start) = rest.find("{{") else {
            let text = if trim_next { rest.trim_start() } else { rest };
            toks.push(Tok::Text(text.to_owned()));
            return Ok(toks);
        };
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner_start = start + 2;
        let after = &rest[inner_start..];
        let trim_left = after.starts_with("- ") || after.starts_with("-\n");
        if trim_left {
            text = text.trim_end();
            inner_start += 1;
        }
        toks.push(Tok::Text(text.to_owned()));
        let body = &rest[inner_start..];
        let end = body.find("}}").ok_or("an unclosed {{")?;
        let mut inner = &body[..end];
        trim_next = inner.ends_with(" -") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            toks.push(Tok::Action(inner.to_owned()));
        }
        rest = &body[end + 2..];
    }
}

enum Stop {
    Eof,
    Else,
    End,
}

fn parse(src: &str, defines: &mut BTreeMap<String, Vec<Node>>) -> Result<Vec<Node>, String> {
    let toks = lex(src)?;
    let mut it = toks.into_iter();
    let (nodes, stop) = parse_block(&mut it, defines)?;
    match stop {
        Stop::Eof => Ok(nodes),
        _ => Err("an unexpected {{ else }} or {{ end }}".into()),
    }
}

fn parse_block(
    it: &mut std::vec::IntoIter<Tok>,
    defines: &mut BTreeMap<String, Vec<Node>>,
) -> Result<(Vec<Node>, Stop), String> {
    let mut nodes = Vec::new();
    while let Some(tok) = it.next() {
        let action = match tok {
            Tok::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t));
                }
                continue;
            }
            Tok::Action(a) => a,
        };
        let (word, rest) = action
            .split_once(char::is_whitespace)
            .unwrap_or((action.as_str(), ""));
        let rest = rest.trim().to_owned();
        match word {
            "end" => return Ok((nodes, Stop::End)),
            "else" if rest.is_empty() => return Ok((nodes, Stop::Else)),
            "if" | "with" => {
                let (then, stop) = parse_block(it, defines)?;
                let otherwise = match stop {
                    Stop::Else => match parse_block(it, defines)? {
                        (otherwise, Stop::End) => otherwise,
                        _ => return Err(format!("{{{{ {word} }}}} without {{{{ end }}}}")),
                    },
                    Stop::End => Vec::new(),
                    Stop::Eof => return Err(format!("{{{{ {word} }}}} without {{{{ end }}}}")),
                };
                nodes.push(if word == "if" {
                    Node::If(rest, then, otherwise)
                } else {
                    Node::With(rest, then, otherwise)
                });
            }
            "define" => {
                let name =
                    unquote(&rest).ok_or_else(|| format!("define needs a quoted name: {rest}"))?;
                match parse_block(it, defines)? {
                    (body, Stop::End) => {
                        defines.insert(name, body);
                    }
                    _ => return Err(format!("define {name} without end")),
                }
            }
            "range" | "template" | "block" | "else" | "tpl" => {
                return Err(format!("unsupported action {{{{ {action} }}}}"));
            }
            _ if word.starts_with('$') && rest.starts_with(":=") => {
                nodes.push(Node::Assign(word.to_owned(), rest[2..].trim().to_owned()));
            }
            _ => nodes.push(Node::Output(action)),
        }
    }
    Ok((nodes, Stop::Eof))
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() >= 2 && s.starts_with('"') && s.ends_with('"'))
        .then(|| s[1..s.len() - 1].replace("\\\"", "\""))
}

// ---- evaluation ----

struct Ctx<'a> {
    root: &'a Value,
    defines: &'a BTreeMap<String, Vec<Node>>,
    vars: BTreeMap<String, Value>,
}

#[derive(Debug)]
enum Arg {
    Str(String),
    Int(i64),
    Paren(String),
    Word(String),
}

const FUNCTIONS: &[&str] = &[
    "include",
    "toYaml",
    "nindent",
    "indent",
    "quote",
    "default",
    "trunc",
    "trimSuffix",
    "replace",
    "contains",
    "printf",
    "and",
    "or",
    "not",
    "eq",
    "gt",
    "int",
];

impl Ctx<'_> {
    fn exec(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Output(p) => out.push_str(&text(&self.pipeline(p, dot)?)?),
                Node::Assign(name, p) => {
                    let v = self.pipeline(p, dot)?;
                    self.vars.insert(name.clone(), v);
                }
                Node::If(p, then, otherwise) => {
                    let branch = if truthy(&self.pipeline(p, dot)?) {
                        then
                    } else {
                        otherwise
                    };
                    self.exec(branch, dot, out)?;
                }
                Node::With(p, then, otherwise) => {
                    let v = self.pipeline(p, dot)?;
                    if truthy(&v) {
                        self.exec(then, &v, out)?;
                    } else {
                        self.exec(otherwise, dot, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, src: &str, dot: &Value) -> Result<Value, String> {
        let mut piped: Option<Value> = None;
        for command in split_pipes(src) {
            let args = tokenize(command)?;
            piped = Some(self.command(&args, dot, piped)?);
        }
        piped.ok_or_else(|| format!("an empty pipeline: {src:?}"))
    }

    fn command(
        &mut self,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, String> {
        let Some(first) = args.first() else {
            return Err("an empty command".into());
        };
        if let Arg::Word(w) = first {
            if FUNCTIONS.contains(&w.as_str()) {
                let mut values = args[1..]
                    .iter()
                    .map(|a| self.arg(a, dot))
                    .collect::<Result<Vec<_>, _>>()?;
                values.extend(piped);
                return self.call(w, values);
            }
            if w.ends_with("Capabilities.APIVersions.Has") {
                let [_, wanted] = args else {
                    return Err("APIVersions.Has takes one argument".into());
                };
                let wanted = self.arg(wanted, dot)?;
                let served = &self.root["Capabilities"]["APIVersions"];
                return Ok(Value::Bool(
                    served.as_array().is_some_and(|a| a.contains(&wanted)),
                ));
            }
        }
        if args.len() > 1 || piped.is_some() {
            return Err(format!("not a function: {first:?}"));
        }
        self.arg(first, dot)
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Result<Value, String> {
        match arg {
            Arg::Str(s) => Ok(Value::String(s.clone())),
            Arg::Int(i) => Ok(json!(i)),
            Arg::Paren(p) => self.pipeline(p, dot),
            Arg::Word(w) => match w.as_str() {
                "." => Ok(dot.clone()),
                "$" => Ok(self.root.clone()),
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                w if w.starts_with("$.") => lookup(self.root, &w[2..]),
                w if w.starts_with('.') => lookup(dot, &w[1..]),
                w if w.starts_with('$') => self
                    .vars
                    .get(w)
                    .cloned()
                    .ok_or_else(|| format!("undefined variable {w}")),
                w => Err(format!("unsupported function or word {w}")),
            },
        }
    }

    fn call(&mut self, name: &str, a: Vec<Value>) -> Result<Value, String> {
        let want = |n: usize| -> Result<(), String> {
            if a.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} arguments, got {}", a.len()))
            }
        };
        let int = |v: &Value| -> Result<i64, String> {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| format!("{name}: not an integer: {v}"))
        };
        Ok(match name {
            "include" => {
                want(2)?;
                let template = a[0].as_str().ok_or("include needs a template name")?;
                let body = self
                    .defines
                    .get(template)
                    .ok_or_else(|| format!("no template {template:?}"))?;
                let mut inner = Ctx {
                    root: self.root,
                    defines: self.defines,
                    vars: BTreeMap::new(),
                };
                let mut out = String::new();
                inner.exec(body, &a[1], &mut out)?;
                Value::String(out)
            }
            "toYaml" => {
                want(1)?;
                let yaml = serde_norway::to_string(&a[0]).map_err(|e| e.to_string())?;
                Value::String(yaml.trim_end_matches('\n').to_owned())
            }
            "indent" | "nindent" => {
                want(2)?;
                let pad = " ".repeat(usize::try_from(int(&a[0])?).map_err(|e| e.to_string())?);
                let indented = format!("{pad}{}", text(&a[1])?.replace('\n', &format!("\n{pad}")));
                Value::String(if name == "nindent" {
                    format!("\n{indented}")
                } else {
                    indented
                })
            }
            "quote" => Value::String(
                a.iter()
                    .filter(|v| !v.is_null())
                    .map(|v| {
                        text(v).map(|s| {
                            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(" "),
            ),
            "default" => {
                want(2)?;
                if truthy(&a[1]) {
                    a[1].clone()
                } else {
                    a[0].clone()
                }
            }
            "trunc" => {
                want(2)?;
                let s = text(&a[1])?;
                let n = int(&a[0])?;
                let n = usize::try_from(n)
                    .map_err(|_| "trunc: negative lengths are not supported".to_owned())?;
                Value::String(s.chars().take(n).collect())
            }
            "trimSuffix" => {
                want(2)?;
                let (suffix, s) = (text(&a[0])?, text(&a[1])?);
                Value::String(s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned())
            }
            "replace" => {
                want(3)?;
                Value::String(text(&a[2])?.replace(&text(&a[0])?, &text(&a[1])?))
            }
            "contains" => {
                want(2)?;
                Value::Bool(text(&a[1])?.contains(&text(&a[0])?))
            }
            "printf" => {
                let format = a.first().ok_or("printf needs a format")?;
                let mut out = text(format)?;
                for v in &a[1..] {
                    let i = ["%s", "%d", "%v"]
                        .iter()
                        .filter_map(|verb| out.find(verb))
                        .min()
                        .ok_or("printf: more arguments than verbs")?;
                    out.replace_range(i..i + 2, &text(v)?);
                }
                Value::String(out)
            }
            "and" => a
                .iter()
                .find(|v| !truthy(v))
                .or(a.last())
                .cloned()
                .unwrap_or(Value::Null),
            "or" => a
                .iter()
                .find(|v| truthy(v))
                .or(a.last())
                .cloned()
                .unwrap_or(Value::Null),
            "not" => {
                want(1)?;
                Value::Bool(!truthy(&a[0]))
            }
            "eq" => {
                want(2)?;
                Value::Bool(a[0] == a[1])
            }
            "gt" => {
                want(2)?;
                Value::Bool(int(&a[0])? > int(&a[1])?)
            }
            "int" => {
                want(1)?;
                json!(int(&a[0])?)
            }
            other => return Err(format!("unsupported function {other}")),
        })
    }
}

/// `.A.B` from `value`; a missing key is an error (a typo in a template or in values.yaml).
fn lookup(value: &Value, path: &str) -> Result<Value, String> {
    let mut v = value;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        v = v
            .as_object()
            .and_then(|o| o.get(key))
            .ok_or_else(|| format!("no value at .{path} (missing {key:?})"))?;
    }
    Ok(v.clone())
}

/// Go template truth: false, 0, nil and empty strings, lists and maps are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// How a value prints into the output.
fn text(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("printing a list or map ({other}): use toYaml")),
    }
}

/// Splits a pipeline at the `|` outside quotes and parentheses.
fn split_pipes(src: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quoted, mut start) = (Vec::new(), 0usize, false, 0);
    let mut prev = '\0';
    for (i, c) in src.char_indices() {
        match c {
            '"' if prev != '\\' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '|' if !quoted && depth == 0 => {
                parts.push(src[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        prev = c;
    }
    parts.push(src[start..].trim());
    parts
}

fn tokenize(src: &str) -> Result<Vec<Arg>, String> {
    let mut args = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                s.push(chars[i]);
                i += 1;
            }
            if i == chars.len() {
                return Err(format!("an unclosed string in {src:?}"));
            }
            i += 1;
            args.push(Arg::Str(s));
        } else if c == '(' {
            let (start, mut depth, mut quoted) = (i + 1, 0usize, false);
            while i < chars.len() {
                match chars[i] {
                    '"' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            if i == chars.len() {
                return Err(format!("an unclosed ( in {src:?}"));
            }
            args.push(Arg::Paren(chars[start..i].iter().collect()));
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '(' && chars[i] != '"'
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            args.push(match word.parse::<i64>() {
                Ok(n) => Arg::Int(n),
                Err(_) => Arg::Word(word),
            });
        }
    }
    Ok(args)
}
