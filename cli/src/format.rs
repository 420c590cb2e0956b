//! `--format`: a subset of Go's text/template as Podman uses it (`{{.Field}}`, nested
//! fields, `{{json .}}`, `{{range}}`, `{{if}}`/`{{else}}`, `{{with}}`, pipelines,
//! string literals such as `{{"\t"}}`, and Podman's functions `json`, `upper`, `lower`,
//! `title`, `join`, `split`, `truncate`, `len`, `printf`, `eq`, `ne`, `not`, `and`, `or`),
//! Podman's `table` prefix (a header row, spaces become column separators), and output
//! through a tabwriter set as Podman's Go one (minwidth 12 there counts the padding,
//! here it does not: 10 + 2). Data is `serde_json::Value`, printed as Go prints.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use serde_json::Value;

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty: `.`).
    Field(Vec<String>),
    Lit(Value),
    Func(String),
    Sub(Pipeline),
}

type Pipeline = Vec<Vec<Arg>>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
}

/// A parsed `--format` value.
pub struct Template {
    nodes: Vec<Node>,
    /// Whether it had Podman's `table` prefix: print a header row first.
    pub table: bool,
}

/// What `--format` asked for.
pub enum Format {
    Json,
    Template(Template),
}

impl Format {
    pub fn parse(text: &str) -> Result<Format> {
        if text == "json" {
            return Ok(Format::Json);
        }
        Template::parse(text).map(Format::Template)
    }
}

impl Template {
    /// Parses as Podman normalizes: `table ` prefix (spaces then separate columns), `\t`
    /// and `\n` escapes, and a final newline.
    pub fn parse(text: &str) -> Result<Template> {
        let (mut body, table) = match text.strip_prefix("table") {
            Some(rest) => (rest.trim_start_matches(' ').replace(' ', "\t"), true),
            None => (text.to_string(), false),
        };
        body = body.replace("\\t", "\t").replace("\\n", "\n");
        if !body.ends_with('\n') {
            body.push('\n');
        }
        let tokens = lex(&body)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&tokens, &mut pos)?;
        if let Some(e) = end {
            bail!("template: unexpected {{{{{e}}}}}");
        }
        Ok(Template { nodes, table })
    }

    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        exec(&self.nodes, data, false, &mut out)?;
        Ok(out)
    }

    /// The header row: each field shows as its column name (`headers`, else the field's
    /// name split at capitals and upper-cased, as Podman does).
    pub fn render_header(&self, headers: &[(&str, &str)]) -> Result<String> {
        let mut out = String::new();
        let mut names = serde_json::Map::new();
        collect_fields(&self.nodes, &mut |f: &str| {
            let h = headers
                .iter()
                .find(|(k, _)| *k == f)
                .map_or_else(|| default_header(f), |(_, v)| v.to_string());
            names.insert(f.to_string(), Value::String(h));
        });
        exec(&self.nodes, &Value::Object(names), true, &mut out)?;
        Ok(out)
    }
}

fn default_header(field: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = field.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if i > 0
            && c.is_uppercase()
            && (chars[i - 1].is_lowercase() || chars.get(i + 1).is_some_and(|n| n.is_lowercase()))
        {
            out.push(' ');
        }
        out.extend(c.to_uppercase());
    }
    out
}

fn collect_fields(nodes: &[Node], f: &mut dyn FnMut(&str)) {
    let pipe = |p: &Pipeline, f: &mut dyn FnMut(&str)| {
        for cmd in p {
            for a in cmd {
                if let Arg::Field(path) = a {
                    if let Some(last) = path.last() {
                        f(last);
                    }
                }
            }
        }
    };
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Print(p) => pipe(p, f),
            Node::If(p, a, b) | Node::Range(p, a, b) | Node::With(p, a, b) => {
                pipe(p, f);
                collect_fields(a, f);
                collect_fields(b, f);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    Action(String),
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let mut text = rest[..start].to_string();
        let after = &rest[start + 2..];
        let trim_left = after.starts_with('-') && after[1..].starts_with(char::is_whitespace);
        if trim_left {
            text.truncate(text.trim_end().len());
        }
        if !text.is_empty() {
            out.push(Tok::Text(text));
        }
        let after = if trim_left { &after[1..] } else { after };
        let end = find_close(after).ok_or_else(|| anyhow!("template: unclosed action"))?;
        let mut inner = &after[..end];
        let mut rest_after = &after[end + 2..];
        if inner.ends_with('-') && inner[..inner.len() - 1].ends_with(char::is_whitespace) {
            inner = &inner[..inner.len() - 1];
            rest_after = rest_after.trim_start();
        }
        out.push(Tok::Action(inner.trim().to_string()));
        rest = rest_after;
    }
    if !rest.is_empty() {
        out.push(Tok::Text(rest.to_string()));
    }
    Ok(out)
}

/// The position of the `}}` closing an action, skipping string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses nodes up to `{{end}}` or `{{else}}` (returned as the second value).
fn parse_nodes(toks: &[Tok], pos: &mut usize) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let tok = toks[*pos].clone();
        *pos += 1;
        match tok {
            Tok::Text(t) => nodes.push(Node::Text(t)),
            Tok::Action(a) => {
                if a.starts_with("/*") {
                    continue;
                }
                let (word, rest) = a.split_once(char::is_whitespace).unwrap_or((&a, ""));
                match word {
                    "end" => return Ok((nodes, Some("end".into()))),
                    "else" => return Ok((nodes, Some("else".into()))),
                    "if" | "range" | "with" => {
                        let pipe = parse_pipeline(rest)?;
                        let (body, end) = parse_nodes(toks, pos)?;
                        let alt = match end.as_deref() {
                            Some("end") => Vec::new(),
                            Some("else") => match parse_nodes(toks, pos)? {
                                (alt, Some(e)) if e == "end" => alt,
                                _ => bail!("template: {{{{else}}}} without {{{{end}}}}"),
                            },
                            _ => bail!("template: {{{{{word}}}}} without {{{{end}}}}"),
                        };
                        nodes.push(match word {
                            "if" => Node::If(pipe, body, alt),
                            "range" => Node::Range(pipe, body, alt),
                            _ => Node::With(pipe, body, alt),
                        });
                    }
                    _ => nodes.push(Node::Print(parse_pipeline(&a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_pipeline(s: &str) -> Result<Pipeline> {
    let mut chars = s.chars().peekable();
    let pipe = parse_pipe_chars(&mut chars, false)?;
    if pipe.iter().any(Vec::is_empty) {
        bail!("template: missing value in {s:?}");
    }
    Ok(pipe)
}

fn parse_pipe_chars(chars: &mut std::iter::Peekable<std::str::Chars>, in_paren: bool) -> Result<Pipeline> {
    let mut pipe: Pipeline = vec![Vec::new()];
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            pipe.push(Vec::new());
        } else if c == ')' {
            if !in_paren {
                bail!("template: unexpected )");
            }
            chars.next();
            return Ok(pipe);
        } else if c == '(' {
            chars.next();
            let sub = parse_pipe_chars(chars, true)?;
            pipe.last_mut().expect("non-empty").push(Arg::Sub(sub));
        } else if c == '"' {
            chars.next();
            let mut lit = String::new();
            loop {
                match chars.next() {
                    None => bail!("template: unterminated string"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('t') => lit.push('\t'),
                        Some('n') => lit.push('\n'),
                        Some(o) => lit.push(o),
                        None => bail!("template: unterminated string"),
                    },
                    Some(o) => lit.push(o),
                }
            }
            pipe.last_mut()
                .expect("non-empty")
                .push(Arg::Lit(Value::String(lit)));
        } else if c == '`' {
            chars.next();
            let lit: String = chars.by_ref().take_while(|&c| c != '`').collect();
            pipe.last_mut()
                .expect("non-empty")
                .push(Arg::Lit(Value::String(lit)));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' || c == ')' || c == '(' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            let arg = if word == "." {
                Arg::Field(Vec::new())
            } else if let Some(path) = word.strip_prefix('.') {
                Arg::Field(path.split('.').map(str::to_string).collect())
            } else if word == "true" || word == "false" {
                Arg::Lit(Value::Bool(word == "true"))
            } else if let Ok(n) = word.parse::<i64>() {
                Arg::Lit(Value::from(n))
            } else if word.starts_with(|c: char| c.is_ascii_alphabetic()) {
                Arg::Func(word)
            } else {
                bail!("template: unexpected {word:?}");
            };
            pipe.last_mut().expect("non-empty").push(arg);
        }
    }
    if in_paren {
        bail!("template: unclosed (");
    }
    Ok(pipe)
}

fn exec(nodes: &[Node], dot: &Value, header: bool, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Print(p) => out.push_str(&go_string(&eval_pipe(p, dot, header)?)),
            Node::If(p, a, b) => {
                let branch = if truthy(&eval_pipe(p, dot, header)?) { a } else { b };
                exec(branch, dot, header, out)?;
            }
            Node::With(p, a, b) => {
                let v = eval_pipe(p, dot, header)?;
                if truthy(&v) {
                    exec(a, &v, header, out)?;
                } else {
                    exec(b, dot, header, out)?;
                }
            }
            Node::Range(p, a, b) => {
                let v = eval_pipe(p, dot, header)?;
                let items: Vec<Value> = match v {
                    Value::Array(items) => items,
                    Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                    Value::Null => Vec::new(),
                    other if header => vec![other],
                    other => bail!("template: range can't iterate over {}", go_string(&other)),
                };
                if items.is_empty() {
                    exec(b, dot, header, out)?;
                }
                for item in &items {
                    exec(a, if header { dot } else { item }, header, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipe(p: &Pipeline, dot: &Value, header: bool) -> Result<Value> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        prev = Some(eval_cmd(cmd, dot, header, prev.take())?);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn eval_arg(a: &Arg, dot: &Value, header: bool) -> Result<Value> {
    match a {
        Arg::Field(path) if header => Ok(match path.last() {
            Some(f) => dot.get(f).cloned().unwrap_or(Value::Null),
            None => dot.clone(),
        }),
        Arg::Field(path) => {
            let mut v = dot;
            for f in path {
                v = match v {
                    Value::Object(m) => m.get(f).ok_or_else(|| {
                        anyhow!("template: can't evaluate field {f} in type {}", type_name(v))
                    })?,
                    Value::Null => return Ok(Value::Null),
                    _ => bail!("template: can't evaluate field {f} in type {}", type_name(v)),
                };
            }
            Ok(v.clone())
        }
        Arg::Lit(v) => Ok(v.clone()),
        Arg::Sub(p) => eval_pipe(p, dot, header),
        Arg::Func(f) => call(f, Vec::new()),
    }
}

fn eval_cmd(cmd: &[Arg], dot: &Value, header: bool, prev: Option<Value>) -> Result<Value> {
    match &cmd[0] {
        Arg::Func(f) => {
            let mut args = cmd[1..]
                .iter()
                .map(|a| eval_arg(a, dot, header))
                .collect::<Result<Vec<_>>>()?;
            args.extend(prev);
            call(f, args)
        }
        a if cmd.len() == 1 && prev.is_none() => eval_arg(a, dot, header),
        _ => bail!("template: can't give arguments to a non-function"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "struct",
        Value::Null => "<nil>",
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn call(f: &str, args: Vec<Value>) -> Result<Value> {
    let s = |i: usize| args.get(i).map(go_string).unwrap_or_default();
    let want = |n: usize| -> Result<()> {
        if args.len() != n {
            bail!(
                "template: wrong number of args for {f}: want {n} got {}",
                args.len()
            );
        }
        Ok(())
    };
    Ok(match f {
        "json" => {
            want(1)?;
            Value::String(to_json(&args[0], false))
        }
        "upper" => Value::String(s(0).to_uppercase()),
        "lower" => Value::String(s(0).to_lowercase()),
        "title" => Value::String(
            s(0).split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "join" => {
            want(2)?;
            let items: Vec<String> = args[0].as_array().into_iter().flatten().map(go_string).collect();
            Value::String(items.join(&s(1)))
        }
        "split" => {
            want(2)?;
            Value::Array(s(0).split(&s(1)).map(|p| Value::String(p.into())).collect())
        }
        "truncate" => {
            want(2)?;
            let n = args[1].as_u64().unwrap_or(0) as usize;
            Value::String(s(0).chars().take(n).collect())
        }
        "len" => {
            want(1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => go_string(other).len(),
            })
        }
        "printf" => Value::String(printf(&s(0), &args[1.min(args.len())..])),
        // `index MAP KEY...` / `index LIST N`: a missing key gives "", as the zero value of
        // the string maps it is mostly used on (labels, annotations).
        "index" => {
            if args.len() < 2 {
                bail!(
                    "template: wrong number of args for index: want at least 2 got {}",
                    args.len()
                );
            }
            let mut item = args[0].clone();
            for key in &args[1..] {
                item = match (&item, key) {
                    (Value::Object(m), key) => m
                        .get(&go_string(key))
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                    (Value::Array(a), Value::Number(n)) => match n.as_u64().and_then(|i| a.get(i as usize)) {
                        Some(v) => v.clone(),
                        None => bail!("template: error calling index: index out of range: {n}"),
                    },
                    (Value::Null, _) => Value::String(String::new()),
                    (other, _) => bail!("template: error calling index: cannot index {}", go_string(other)),
                };
            }
            item
        }
        "eq" => Value::Bool(args.len() >= 2 && args[1..].iter().any(|a| loose_eq(&args[0], a))),
        "ne" => {
            want(2)?;
            Value::Bool(!loose_eq(&args[0], &args[1]))
        }
        "not" => {
            want(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" => args
            .iter()
            .find(|a| !truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|a| truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        _ => bail!("template: function {f:?} not defined"),
    })
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    a == b || (!a.is_object() && !a.is_array() && go_string(a) == go_string(b))
}

fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&to_json(
                &Value::String(args.next().map(go_string).unwrap_or_default()),
                false,
            )),
            Some(_) => out.push_str(
                &args
                    .next()
                    .map(go_string)
                    .unwrap_or_else(|| "%!v(MISSING)".into()),
            ),
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

/// A value as Go's fmt prints it: slices `[a b]`, maps `map[k:v]`, nil `<nil>`.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_string).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_string(&m[*k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// JSON as Go's encoding/json writes it: `<`, `>` and `&` escaped; pretty output is
/// indented by four spaces.
pub fn to_json(v: &Value, pretty: bool) -> String {
    if pretty {
        return json_pretty(v);
    }
    go_escape(v.to_string())
}

/// Pretty JSON (four spaces, Go's escapes) of anything serializable, fields in the order
/// the type declares them.
pub fn json_pretty<T: serde::Serialize + ?Sized>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser).expect("values serialize as JSON");
    go_escape(String::from_utf8(buf).expect("JSON is UTF-8"))
}

/// `<`, `>` and `&` only occur inside JSON strings, where Go writes them as `\u00XX`.
fn go_escape(text: String) -> String {
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Prints rows for `--format`/default tables: `json` as a JSON array, a template row by
/// row (with the header first for `table`), aligned as Podman's tabwriter does.
pub fn print(format: &Format, rows: &[Value], headers: &[(&str, &str)]) -> Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    match format {
        Format::Json => {
            writeln!(lock, "{}", to_json(&Value::Array(rows.to_vec()), true))?;
        }
        Format::Template(t) => {
            let mut tw = tabwriter::TabWriter::new(&mut lock).minwidth(10).padding(2);
            if t.table {
                tw.write_all(t.render_header(headers)?.as_bytes())?;
            }
            for row in rows {
                tw.write_all(t.render(row)?.as_bytes())?;
            }
            tw.flush()?;
        }
    }
    Ok(())
}

/// Go's `time.Time.String()` for a UTC time: `2023-11-14 22:13:20 +0000 UTC`.
pub fn go_time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    let s = crate::commands::rfc3339(t);
    format!("{} {} +0000 UTC", &s[..10], &s[11..19])
}

/// Podman's "3 years ago" (go-units HumanDuration plus " ago").
pub fn since(secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!("{} ago", human_duration((now - secs).max(0)))
}

fn human_duration(secs: i64) -> String {
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = size as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    format!("{} {}", go_g3(v), UNITS[i])
}

/// Go's `%.3g`.
fn go_g3(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let sci = format!("{v:.2e}");
    let (mantissa, exp) = sci.split_once('e').expect("scientific notation");
    let exp: i32 = exp.parse().expect("exponent");
    if !(-4..3).contains(&exp) {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (2 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: Value) -> String {
        Template::parse(t).unwrap().render(&v).unwrap()
    }

    #[test]
    fn index_reads_maps_and_lists() {
        let v = json!({"Labels": {"a.b": "1"}, "Ports": {"80/tcp": [{"HostPort": "8080"}]}, "L": ["x", "y"]});
        assert_eq!(render(r#"{{index .Labels "a.b"}}"#, v.clone()), "1\n");
        assert_eq!(render(r#"{{index .Labels "missing"}}"#, v.clone()), "\n");
        assert_eq!(
            render(r#"{{index .Ports "80/tcp" 0 "HostPort"}}"#, v.clone()),
            "8080\n"
        );
        assert_eq!(
            render(
                r#"{{range (index .Ports "80/tcp")}}{{.HostPort}}{{end}}"#,
                v.clone()
            ),
            "8080\n"
        );
        assert_eq!(render("{{index .L 1}}", v.clone()), "y\n");
        assert!(Template::parse("{{index .L 5}}").unwrap().render(&v).is_err());
    }

    #[test]
    fn fields_funcs_and_control() {
        let v = json!({"ID": "abc", "Names": ["a", "b"], "Labels": {"z": "1", "a": "2"}, "N": 0, "C": {"Cmd": ["sh"]}});
        assert_eq!(render("{{.ID}}", v.clone()), "abc\n");
        assert_eq!(
            render("{{.C.Cmd}} {{.Names}} {{.Labels}}", v.clone()),
            "[sh] [a b] map[a:2 z:1]\n"
        );
        assert_eq!(render("{{json .Names}}", v.clone()), "[\"a\",\"b\"]\n");
        assert_eq!(render(r#"{{range .Names}}<{{.}}>{{end}}"#, v.clone()), "<a><b>\n");
        assert_eq!(render(r#"{{if .N}}y{{else}}n{{end}}"#, v.clone()), "n\n");
        assert_eq!(
            render(r#"{{.ID | upper}}{{"\t"}}{{join .Names ","}}"#, v.clone()),
            "ABC\ta,b\n"
        );
        assert_eq!(
            render(r#"{{- if eq .ID "abc" -}} yes {{- end}}"#, v.clone()),
            "yes\n"
        );
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{if .ID}}x").is_err());
        assert!(Template::parse("{{.ID}}").unwrap().render(&json!({})).is_err());
    }

    #[test]
    fn table_headers() {
        let t = Template::parse("table {{.ID}} {{.VirtualSize}}\\t{{.Repository}}").unwrap();
        assert!(t.table);
        assert_eq!(
            t.render_header(&[("ID", "IMAGE ID")]).unwrap(),
            "IMAGE ID\tVIRTUAL SIZE\tREPOSITORY\n"
        );
    }

    #[test]
    fn sizes_and_durations_as_go_units() {
        assert_eq!(human_size(2_156_292), "2.16 MB");
        assert_eq!(human_size(9728), "9.73 kB");
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1000), "1 kB");
        assert_eq!(human_size(999_700), "1e+03 kB");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 365 * 86400 + 5), "3 years");
        assert_eq!(go_time(1_700_000_000), "2023-11-14 22:13:20 +0000 UTC");
    }
}
