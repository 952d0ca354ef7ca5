//! No file of `node/src` imports a module that imports it back, directly or through others.
//!
//! The rule (issue 18): a file *imports* a module when it names it in a `use` item or in a path
//! that starts with `crate::`, `super::` or `self::` anywhere in its code (tests included). A
//! name is followed through the re-exports (`pub use`) of the module it is imported from, to
//! the file that defines it. A parent module's own `mod` items and its re-exports of what its
//! children define do not count: `data/mod.rs` saying `pub use broadcast::Strategy` does not
//! make it import `broadcast`.
//!
//! This is a small lexer and resolver, not `rustc`: it knows modules from the file tree and
//! from inline `mod name { .. }` blocks, skips comments, strings and character literals, and
//! ignores paths into other crates. `checker_*` tests show that it finds the cycles it is meant
//! to find.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A token of Rust source, as far as imports go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Open,
    Close,
    Semi,
    Comma,
    Star,
    /// Any other punctuation.
    Other(char),
}

fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if (ch == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#'))))
            || (ch == 'b' && at(i + 1) == 'r' && matches!(at(i + 2), '"' | '#'))
        {
            // A raw string: r"..", r#".."#, br"..".
            i += if ch == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if ch == '\'' {
            // A character literal ('a', '\n', '\u{..}', b'x' is handled as ident b + this),
            // or a lifetime ('a), which is skipped like one.
            if at(i + 1) == '\\' {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if word == "b" && at(i) == '\'' {
                // b'x' or b'\n': skip the literal.
                i += 1;
                if at(i) == '\\' {
                    i += 1;
                }
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            out.push(Tok::Ident(word));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
            out.push(match ch {
                ':' if at(i) == ':' => {
                    i += 1;
                    Tok::Path
                }
                '{' => Tok::Open,
                '}' => Tok::Close,
                ';' => Tok::Semi,
                ',' => Tok::Comma,
                '*' => Tok::Star,
                other => Tok::Other(other),
            });
        }
    }
    out
}

/// A module path below the crate root (`[]` is the root).
type ModPath = Vec<String>;

/// A path as written, seen from `from` (the module it was written in).
#[derive(Clone, Debug)]
struct Import {
    from: ModPath,
    path: Vec<String>,
    /// Written in a `pub use` (any visibility but private).
    public: bool,
    /// Written in a `use` item (rather than in code): a bare first segment may name a child.
    in_use: bool,
}

/// What one file says: the imports it writes and the inline modules it declares.
#[derive(Debug, Default)]
struct Parsed {
    imports: Vec<Import>,
    inline_modules: Vec<ModPath>,
}

/// The paths of a use tree, from `toks[*i]` up to the closing `;` or `}` of its group.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    while *i < toks.len() {
        match &toks[*i] {
            Tok::Ident(w) if w == "as" => {
                // The alias names nothing new to resolve.
                *i += 2;
            }
            Tok::Ident(w) if w == "self" && !prefix.is_empty() && path.len() == prefix.len() => {
                // `foo::{self, ..}` imports foo itself.
                out.push(prefix.to_vec());
                *i += 1;
            }
            Tok::Ident(w) => {
                path.push(w.clone());
                *i += 1;
            }
            Tok::Path => *i += 1,
            Tok::Star => {
                path.push("*".into());
                *i += 1;
            }
            Tok::Open => {
                *i += 1;
                use_tree(toks, i, &path, out);
                path.truncate(prefix.len());
                // use_tree consumed up to and including the group's `}`.
                continue;
            }
            Tok::Comma => {
                if path.len() > prefix.len() {
                    out.push(std::mem::replace(&mut path, prefix.to_vec()));
                }
                *i += 1;
            }
            Tok::Close => {
                if path.len() > prefix.len() {
                    out.push(std::mem::take(&mut path));
                }
                *i += 1;
                return;
            }
            Tok::Semi => {
                if path.len() > prefix.len() {
                    out.push(std::mem::take(&mut path));
                }
                return;
            }
            Tok::Other(_) => *i += 1,
        }
    }
}

fn parse(module: &ModPath, src: &str) -> Parsed {
    let toks = lex(src);
    let mut parsed = Parsed::default();
    // Inline modules open at brace depth `.1`.
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut public = false;
    let current = |stack: &[(String, usize)]| {
        let mut m = module.clone();
        m.extend(stack.iter().map(|(n, _)| n.clone()));
        m
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(w) if w == "pub" => {
                public = true;
                i += 1;
                if toks.get(i) == Some(&Tok::Other('(')) {
                    while i < toks.len() && toks[i] != Tok::Other(')') {
                        i += 1;
                    }
                    i += 1;
                }
                continue;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    stack.push((name.clone(), depth));
                    depth += 1;
                    parsed.inline_modules.push(current(&stack));
                    i += 3;
                    public = false;
                    continue;
                }
            }
            Tok::Ident(w) if w == "use" => {
                i += 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut i, &[], &mut paths);
                let from = current(&stack);
                for path in paths {
                    parsed.imports.push(Import {
                        from: from.clone(),
                        path,
                        public,
                        in_use: true,
                    });
                }
                public = false;
                continue;
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "super" | "self")
                    && toks.get(i + 1) == Some(&Tok::Path) =>
            {
                // A path in code: `crate::a::b`, `super::super::x`.
                let mut path = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::Path) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(seg)) => {
                            path.push(seg.clone());
                            j += 2;
                        }
                        _ => break,
                    }
                }
                // `x::<T>` and `x::{..}` end the path; what was read is enough.
                // (Paths as written in macros and attributes are caught too; doc comments are
                // skipped with the other comments.)
                let prev_is_path = i > 0 && toks[i - 1] == Tok::Path;
                if !prev_is_path {
                    parsed.imports.push(Import {
                        from: current(&stack),
                        path,
                        public: false,
                        in_use: false,
                    });
                }
                i = j;
                continue;
            }
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
            }
            _ => {}
        }
        // `pub` applies to the `use` that follows at once, if any.
        public = false;
        i += 1;
    }
    parsed
}

/// The crate's modules and what each file imports, keyed by file (relative path).
#[derive(Debug, Default)]
struct Crate {
    /// Module path to the file it lives in.
    modules: BTreeMap<ModPath, String>,
    /// File to its module path.
    files: BTreeMap<String, ModPath>,
    parsed: BTreeMap<String, Parsed>,
}

/// The module path of a file below `src/`: `lib.rs` is the root, `a/mod.rs` and `a.rs` are
/// `a`, `a/b.rs` is `a::b`.
fn module_of(file: &str) -> ModPath {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

impl Crate {
    fn new(files: &[(String, String)]) -> Self {
        let mut c = Crate::default();
        for (file, src) in files {
            let module = module_of(file);
            let parsed = parse(&module, src);
            c.modules.insert(module.clone(), file.clone());
            for m in &parsed.inline_modules {
                c.modules.insert(m.clone(), file.clone());
            }
            c.files.insert(file.clone(), module);
            c.parsed.insert(file.clone(), parsed);
        }
        c
    }

    /// `path` as written in module `from`, made absolute; `None` if it leaves the crate.
    fn absolute(&self, from: &ModPath, path: &[String], in_use: bool) -> Option<ModPath> {
        let first = path.first()?;
        let mut base: ModPath;
        let mut rest = path;
        match first.as_str() {
            "crate" => {
                base = Vec::new();
                rest = &path[1..];
            }
            "self" => {
                base = from.clone();
                rest = &path[1..];
            }
            "super" => {
                base = from.clone();
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            name if in_use => {
                // A bare name in a `use` is relative when it names a child module.
                let mut child = from.clone();
                child.push(name.to_owned());
                if !self.modules.contains_key(&child) {
                    return None;
                }
                base = from.clone();
            }
            _ => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module that defines what absolute `path` names: the longest module prefix, followed
    /// through that module's re-exports of the next name.
    fn target(&self, path: &ModPath, hops: usize) -> Option<ModPath> {
        let k = (0..=path.len())
            .rev()
            .find(|&k| self.modules.contains_key(&path[..k]))?;
        let module = path[..k].to_vec();
        let Some(name) = path.get(k).filter(|n| *n != "*") else {
            return Some(module);
        };
        if hops < 8 {
            let file = &self.modules[&module];
            for import in &self.parsed[file].imports {
                if !import.public || import.from != module {
                    continue;
                }
                let last = import.path.last().map(String::as_str);
                let reexported = if last == Some(name.as_str()) {
                    Some(import.path.clone())
                } else if last == Some("*") {
                    let mut p = import.path.clone();
                    p.pop();
                    p.push(name.clone());
                    Some(p)
                } else {
                    None
                };
                let Some(p) = reexported else { continue };
                if let Some(abs) = self.absolute(&module, &p, true) {
                    if let Some(t) = self.target(&abs, hops + 1) {
                        if t != module || last != Some("*") {
                            return Some(t);
                        }
                    }
                }
            }
        }
        Some(module)
    }

    /// Every file each file imports (itself excluded).
    fn edges(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (file, parsed) in &self.parsed {
            let own = &self.files[file];
            let entry = out.entry(file.clone()).or_default();
            for import in &parsed.imports {
                let Some(abs) = self.absolute(&import.from, &import.path, import.in_use) else {
                    continue;
                };
                let Some(target) = self.target(&abs, 0) else {
                    continue;
                };
                // A parent's re-export of what its own children define does not count.
                if import.public && target.len() > own.len() && target.starts_with(own) {
                    continue;
                }
                let to = &self.modules[&target];
                if to != file {
                    entry.insert(to.clone());
                }
            }
        }
        out
    }
}

/// The strongly connected sets of more than one file (Tarjan), each sorted.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// Every `.rs` file under `dir`, as (path relative to `dir`, contents).
fn read_tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn tree(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(f, s)| ((*f).to_owned(), (*s).to_owned()))
        .collect()
}

#[track_caller]
fn cycles_of(files: &[(&str, &str)]) -> Vec<Vec<String>> {
    cycles(&Crate::new(&tree(files)).edges())
}

#[test]
fn node_src_has_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let krate = Crate::new(&read_tree(&src));
    let edges = krate.edges();
    assert!(edges.len() > 30, "read the tree: {:?}", edges.keys());
    let found = cycles(&edges);
    let mut report = String::new();
    for c in &found {
        report.push_str(&format!("\n  cycle among {}:", c.join(", ")));
        for f in c {
            let into: Vec<&String> = edges[f].iter().filter(|t| c.contains(t)).collect();
            report.push_str(&format!("\n    {f} imports {into:?}"));
        }
    }
    assert!(found.is_empty(), "node/src has import cycles:{report}");
}

#[test]
fn checker_finds_a_direct_cycle_and_ignores_comments_and_strings() {
    let found = cycles_of(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "use crate::b::X;\n"),
        ("b.rs", "use crate::a::{self, Y};"),
        (
            "c.rs",
            "// use crate::a::Z;\n/* use crate::b::W; */\nconst S: &str = \"crate::a::Q\";\nconst C: char = '\"'; fn f<'a>() {}",
        ),
    ]);
    assert_eq!(found, vec![vec!["a.rs".to_owned(), "b.rs".to_owned()]]);
    assert!(
        cycles_of(&[
            ("lib.rs", "mod a; mod b;"),
            ("a.rs", "use crate::b::X;"),
            (
                "b.rs",
                "// use crate::a::Y;\nconst S: &str = r#\"crate::a::Y\"#;"
            )
        ])
        .is_empty()
    );
}

#[test]
fn checker_finds_a_cycle_through_others_in_code_and_through_a_reexport() {
    // a -> b (a path in code), b -> c, c -> a.
    let found = cycles_of(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a.rs", "fn f() { crate::b::g(); }"),
        ("b.rs", "use super::c::T;"),
        ("c.rs", "pub(crate) fn h() -> crate::a::U { todo() }"),
    ]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    // q imports p::X, which p re-exports from p::c; p::c imports q: a cycle q <-> p/c.rs.
    let found = cycles_of(&[
        ("lib.rs", "mod p; mod q;"),
        ("p/mod.rs", "mod c;\npub use c::X;"),
        ("p/c.rs", "pub struct X; use crate::q::Z;"),
        ("q.rs", "use crate::p::X; pub struct Z;"),
    ]);
    assert_eq!(found, vec![vec!["p/c.rs".to_owned(), "q.rs".to_owned()]]);
}

#[test]
fn checker_lets_a_parent_reexport_its_children_but_not_use_them() {
    // The parent re-exports its child's type and the child uses the parent's: no cycle.
    let files = [
        ("lib.rs", "pub mod p;"),
        ("p/mod.rs", "mod c;\npub use c::{X, Y as Z};\npub struct P;"),
        ("p/c.rs", "use super::P;\npub struct X; pub struct Y;"),
    ];
    assert!(cycles_of(&files).is_empty());
    // A private `use` of the child does count.
    let found = cycles_of(&[
        ("lib.rs", "pub mod p;"),
        ("p/mod.rs", "mod c;\nuse c::X;\npub struct P;"),
        ("p/c.rs", "use super::P;\npub struct X;"),
    ]);
    assert_eq!(
        found,
        vec![vec!["p/c.rs".to_owned(), "p/mod.rs".to_owned()]]
    );
    // Tests inline in a file see their own file through `super`: no cycle.
    assert!(
        cycles_of(&[
            ("lib.rs", "mod a;"),
            ("a.rs", "pub struct A;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::a::A;\n}\n"),
        ])
        .is_empty()
    );
}
