//! The architecture test: every source file of every crate in the workspace may import only
//! from its own layer or the layers below it, and no two files import each other, directly or
//! around a circle.
//!
//! It reads the sources as text (no external tool): each `use` declaration and each path in
//! the code that starts with `crate::`, `super::`, `self::`, a child module or an imported
//! module is resolved to the file that defines the item, following re-exports (`pub use`) to
//! the defining file. Comments and string literals are ignored. Each resolved import is an
//! edge from the importing file to the defining file.
//!
//! The layers of the `nodegrid` crate and the edges allowed between them are written once, in
//! [`NODEGRID_LAYERS`]; docs/ARCHITECTURE.md explains them. For the other crates the test
//! requires the absence of cycles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A layer: its name, the path prefixes of its files relative to `src/`, and the layers it may
/// import from besides itself.
type Layer = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// The layers of the `nodegrid` crate, lowest first.
const NODEGRID_LAYERS: &[Layer] = &[
    ("wire", &["wire/"], &[]),
    (
        "leaf",
        &["error.rs", "stats.rs", "auth.rs", "config.rs", "observe.rs"],
        &["wire"],
    ),
    ("proto", &["proto/"], &["wire", "leaf"]),
    ("transport", &["transport/"], &["wire", "leaf"]),
    (
        "session",
        &["session/"],
        &["wire", "leaf", "proto", "transport"],
    ),
    ("handler", &["registry.rs"], &["wire", "leaf", "session"]),
    (
        "api",
        &["api/", "lib.rs"],
        &["wire", "leaf", "proto", "transport", "session", "handler"],
    ),
];

/// Every crate whose sources are checked: (directory under `crates/`, its root file).
const CRATES: &[(&str, &str)] = &[
    ("nodegrid", "lib.rs"),
    ("nodegrid-rest", "lib.rs"),
    ("nodegrid-log", "lib.rs"),
    ("nodegrid-cli", "main.rs"),
];

// ---------------------------------------------------------------------------------------------
// Reading sources

/// The source text with comments and the contents of string and char literals replaced by
/// spaces (newlines kept, so line numbers stay right).
fn blank_comments_and_strings(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char_before(&b, i)
        {
            // Raw string r"…" or r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            for _ in i..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(b[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let is_char = match next {
                Some('\\') => true,
                Some(_) => b.get(i + 2) == Some(&'\''),
                None => false,
            };
            if is_char {
                out.push(' ');
                i += 1;
                while i < b.len() && b[i] != '\'' {
                    if b[i] == '\\' {
                        out.push(' ');
                        i += 1;
                    }
                    if i < b.len() {
                        out.push(' ');
                        i += 1;
                    }
                }
                out.push(' ');
                i += 1;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One `use` path, expanded from its tree: the segments, the name it is imported as (for
/// `as` renames and glob imports: `*`), and the line.
#[derive(Debug, Clone)]
struct UsePath {
    segments: Vec<String>,
    alias: String,
    line: usize,
    public: bool,
    /// Byte offset of the declaration (to tell which inline module it is in).
    pos: usize,
}

/// Expands a use tree such as `crate::{a::{b, c as d}, e::*}` into paths.
fn expand_use_tree(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    // Split at the first top-level `{`.
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::").trim();
        let mut segs = prefix.to_vec();
        segs.extend(
            head.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        let close = tree.rfind('}').unwrap_or(tree.len());
        let inner = &tree[open + 1..close];
        for part in split_top_level(inner) {
            expand_use_tree(part, &segs, out);
        }
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), Some(a.trim().to_string())),
        None => (tree, None),
    };
    let mut segs = prefix.to_vec();
    segs.extend(
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from),
    );
    let last = segs.last().cloned().unwrap_or_default();
    if last == "self" {
        segs.pop();
        let name = alias.unwrap_or_else(|| segs.last().cloned().unwrap_or_default());
        out.push((segs, name));
    } else {
        out.push((segs, alias.unwrap_or(last)));
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The `use` declarations of a blanked source, and the byte ranges they cover.
fn use_declarations(code: &str) -> (Vec<UsePath>, Vec<std::ops::Range<usize>>) {
    let mut uses = Vec::new();
    let mut ranges = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while let Some(pos) = code[i..].find("use ") {
        let at = i + pos;
        i = at + 4;
        if at > 0 && is_ident_char(bytes[at - 1] as char) {
            continue;
        }
        // Only at the start of an item: preceded by `;`, `{`, `}`, `]` (an attribute), a
        // visibility, or the start of the file.
        let before = code[..at].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')');
        let before = before
            .trim_end_matches("pub")
            .trim_end_matches("pub(crate)")
            .trim_end_matches("pub(super)")
            .trim_end();
        let before = if before.ends_with(')') {
            match before.rfind("pub(") {
                Some(p) => before[..p].trim_end(),
                None => before,
            }
        } else {
            before
        };
        if !(before.is_empty()
            || before.ends_with(';')
            || before.ends_with('{')
            || before.ends_with('}')
            || before.ends_with(']'))
        {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            break;
        };
        let tree: String = code[at + 4..at + end]
            .chars()
            .filter(|c| !c.is_whitespace() || *c == ' ')
            .collect::<String>()
            .replace('\n', " ");
        let line = code[..at].matches('\n').count() + 1;
        let mut expanded = Vec::new();
        expand_use_tree(&tree, &[], &mut expanded);
        for (segments, alias) in expanded {
            uses.push(UsePath {
                segments,
                alias,
                line,
                public,
                pos: at,
            });
        }
        ranges.push(at..at + end);
        i = at + end;
    }
    (uses, ranges)
}

/// Every path `a::b::c` in the code outside `use` declarations, with its line and offset.
fn code_paths(code: &str, skip: &[std::ops::Range<usize>]) -> Vec<(Vec<String>, usize, usize)> {
    let chars: Vec<(usize, char)> = code.char_indices().collect();
    let mut out = Vec::new();
    let mut k = 0;
    while k < chars.len() {
        let (pos, c) = chars[k];
        let starts_ident = (c.is_alphabetic() || c == '_')
            && (k == 0 || {
                let p = chars[k - 1].1;
                !is_ident_char(p) && p != ':'
            });
        if !starts_ident || skip.iter().any(|r| r.contains(&pos)) {
            k += 1;
            continue;
        }
        let mut segs = Vec::new();
        let mut j = k;
        loop {
            let s = j;
            while j < chars.len() && is_ident_char(chars[j].1) {
                j += 1;
            }
            segs.push(chars[s..j].iter().map(|x| x.1).collect::<String>());
            if j + 2 < chars.len()
                && chars[j].1 == ':'
                && chars[j + 1].1 == ':'
                && (chars[j + 2].1.is_alphabetic() || chars[j + 2].1 == '_')
            {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            let line = code[..pos].matches('\n').count() + 1;
            out.push((segs, line, pos));
        }
        k = j.max(k + 1);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The module tree and resolution

#[derive(Debug)]
struct SourceFile {
    /// Path relative to `src/`, with `/` separators.
    rel: String,
    /// Module path from the crate root (`[]` for the root).
    module: Vec<String>,
    code: String,
    uses: Vec<UsePath>,
    use_ranges: Vec<std::ops::Range<usize>>,
    /// Child modules declared with `mod x;` (file-backed).
    children: BTreeSet<String>,
    /// Inline modules (`mod x { … }`): name and byte range of the body.
    inline: Vec<(String, std::ops::Range<usize>)>,
}

impl SourceFile {
    /// The inline modules enclosing byte `pos`, outermost first.
    fn inline_path(&self, pos: usize) -> Vec<String> {
        let mut v: Vec<&(String, std::ops::Range<usize>)> = self
            .inline
            .iter()
            .filter(|(_, r)| r.contains(&pos))
            .collect();
        v.sort_by_key(|(_, r)| r.start);
        v.into_iter().map(|(n, _)| n.clone()).collect()
    }
}

/// The inline modules of a blanked source: `mod name {` up to its matching `}`.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].find("mod ") {
        let at = i + p;
        i = at + 4;
        if at > 0 && is_ident_char(b[at - 1] as char) {
            continue;
        }
        let rest = &code[at + 4..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| is_ident_char(*c))
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = at + 4 + (rest.len() - after.len());
        let mut depth = 0;
        let mut end = code.len();
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, open..end));
    }
    out
}

struct Crate {
    files: Vec<SourceFile>,
    by_module: HashMap<Vec<String>, usize>,
}

/// Builds a crate from `(relative path, source)` pairs; `root` is `lib.rs` or `main.rs`.
fn load_crate(sources: Vec<(String, String)>, root: &str) -> Crate {
    let mut files = Vec::new();
    for (rel, src) in sources {
        let module: Vec<String> = if rel == root {
            Vec::new()
        } else {
            let stem = rel.trim_end_matches(".rs");
            let mut m: Vec<String> = stem.split('/').map(String::from).collect();
            if m.last().map(String::as_str) == Some("mod") {
                m.pop();
            }
            m
        };
        let code = blank_comments_and_strings(&src);
        let (uses, use_ranges) = use_declarations(&code);
        let inline = inline_modules(&code);
        files.push(SourceFile {
            rel,
            module,
            code,
            uses,
            use_ranges,
            children: BTreeSet::new(),
            inline,
        });
    }
    let by_module: HashMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    for f in &mut files {
        let module = &f.module;
        f.children = by_module
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .filter_map(|m| m.last().cloned())
            .collect();
    }
    Crate { files, by_module }
}

/// Whether `file` itself defines an item called `name`.
fn defines(file: &SourceFile, name: &str) -> bool {
    const KINDS: &[&str] = &[
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "union",
        "macro_rules!",
    ];
    let code = &file.code;
    let mut i = 0;
    while let Some(p) = code[i..].find(name) {
        let at = i + p;
        i = at + name.len();
        let before_ok = at == 0 || !is_ident_char(code[..at].chars().last().unwrap_or(' '));
        let after_ok = !code[at + name.len()..]
            .chars()
            .next()
            .is_some_and(is_ident_char);
        if !(before_ok && after_ok) {
            continue;
        }
        let prev_word = code[..at]
            .trim_end()
            .rsplit(|c: char| !(is_ident_char(c) || c == '!'))
            .next()
            .unwrap_or("");
        if KINDS.contains(&prev_word) {
            return true;
        }
    }
    false
}

impl Crate {
    /// The file defining the item that `segments` names, seen from the module of file `from`.
    /// `None` for paths outside the crate (std, other crates) or that cannot be resolved.
    fn resolve(&self, from: usize, segments: &[String], depth: usize) -> Option<usize> {
        self.resolve_at(from, segments, depth, &[])
    }

    /// As [`Crate::resolve`], for a path written inside the inline modules `inline` of the
    /// file (a `super` there first leaves them, staying in the file).
    fn resolve_at(
        &self,
        from: usize,
        segments: &[String],
        depth: usize,
        inline: &[String],
    ) -> Option<usize> {
        if depth > 16 || segments.is_empty() {
            return None;
        }
        let f = &self.files[from];
        let mut module = f.module.clone();
        let mut rest = segments;
        match rest[0].as_str() {
            "crate" => {
                module.clear();
                rest = &rest[1..];
            }
            "self" if !inline.is_empty() => return Some(from),
            "self" => rest = &rest[1..],
            "super" => {
                let mut inline_left = inline.len();
                while rest.first().map(String::as_str) == Some("super") {
                    if inline_left > 0 {
                        inline_left -= 1;
                    } else {
                        module.pop()?;
                    }
                    rest = &rest[1..];
                }
                if inline_left > 0 {
                    // Still inside an inline module of this file.
                    return Some(from);
                }
            }
            first if f.children.contains(first) => {}
            first => {
                // A module imported by a `use` of this file.
                let u = f.uses.iter().find(|u| u.alias == first)?;
                let target = self.resolve(from, &u.segments, depth + 1)?;
                module = self.files[target].module.clone();
                // Only if the import named a module file.
                if self.files[target].module.last().map(String::as_str) != Some(first)
                    && u.segments.last() != self.files[target].module.last()
                {
                    return None;
                }
                rest = &rest[1..];
            }
        }
        // Descend through file-backed modules.
        while let Some(seg) = rest.first() {
            let mut child = module.clone();
            child.push(seg.clone());
            if self.by_module.contains_key(&child) {
                module = child;
                rest = &rest[1..];
            } else {
                break;
            }
        }
        let file = *self.by_module.get(&module)?;
        let Some(name) = rest.first() else {
            return Some(file);
        };
        if name == "*" {
            return Some(file);
        }
        // Follow a re-export of `name` in that module to the defining file.
        let mf = &self.files[file];
        if !defines(mf, name) {
            for u in &mf.uses {
                if &u.alias == name && u.segments.last().map(String::as_str) != Some("*") {
                    if let Some(t) = self.resolve(file, &u.segments, depth + 1) {
                        return Some(t);
                    }
                }
            }
            for u in &mf.uses {
                if u.segments.last().map(String::as_str) == Some("*") && u.public {
                    let base = &u.segments[..u.segments.len() - 1];
                    if let Some(t) = self.resolve(file, base, depth + 1) {
                        if t != file && defines(&self.files[t], name) {
                            return Some(t);
                        }
                    }
                }
            }
        }
        Some(file)
    }

    /// Every import edge: (from file, to file, line).
    fn edges(&self) -> Vec<(usize, usize, usize)> {
        let mut edges = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            for u in &f.uses {
                let inline = f.inline_path(u.pos);
                if let Some(t) = self.resolve_at(i, &u.segments, 0, &inline) {
                    if t != i {
                        edges.push((i, t, u.line));
                    }
                }
            }
            for (segs, line, pos) in code_paths(&f.code, &f.use_ranges) {
                let first = segs[0].as_str();
                let relevant = matches!(first, "crate" | "super" | "self")
                    || f.children.contains(first)
                    || f.uses.iter().any(|u| u.alias == first);
                if !relevant {
                    continue;
                }
                let inline = f.inline_path(pos);
                if let Some(t) = self.resolve_at(i, &segs, 0, &inline) {
                    if t != i {
                        edges.push((i, t, line));
                    }
                }
            }
        }
        edges
    }
}

// ---------------------------------------------------------------------------------------------
// Checks

/// The strongly connected components with more than one file (each one a cycle), as lists of
/// file indices.
fn cycles(n: usize, edges: &[(usize, usize, usize)]) -> Vec<Vec<usize>> {
    let mut adj = vec![Vec::new(); n];
    for &(a, b, _) in edges {
        adj[a].push(b);
    }
    // Tarjan's algorithm, iterative.
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some((v, ei)) = work.pop() {
            if ei == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if ei < adj[v].len() {
                work.push((v, ei + 1));
                let w = adj[v][ei];
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    out.push(comp);
                }
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
        }
    }
    out
}

fn layer_of(rel: &str, layers: &[Layer]) -> Option<usize> {
    layers
        .iter()
        .position(|(_, prefixes, _)| prefixes.iter().any(|p| rel.starts_with(p)))
}

/// The problems of one crate, as readable lines (empty when it is clean).
fn check_crate(name: &str, krate: &Crate, layers: Option<&[Layer]>) -> Vec<String> {
    let edges = krate.edges();
    let mut problems = Vec::new();
    if let Some(layers) = layers {
        for f in &krate.files {
            if layer_of(&f.rel, layers).is_none() {
                problems.push(format!("{name}/src/{}: in no layer", f.rel));
            }
        }
        let mut seen = BTreeSet::new();
        for &(a, b, line) in &edges {
            let (fa, fb) = (&krate.files[a], &krate.files[b]);
            let (Some(la), Some(lb)) = (layer_of(&fa.rel, layers), layer_of(&fb.rel, layers))
            else {
                continue;
            };
            let allowed = la == lb || layers[la].2.contains(&layers[lb].0);
            if !allowed && seen.insert((a, b)) {
                problems.push(format!(
                    "{name}/src/{}:{line} ({}) imports {} ({}), a layer it may not use",
                    fa.rel, layers[la].0, fb.rel, layers[lb].0
                ));
            }
        }
    }
    let mut lines: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for &(a, b, line) in &edges {
        lines.entry((a, b)).or_insert(line);
    }
    for comp in cycles(krate.files.len(), &edges) {
        let set: BTreeSet<usize> = comp.iter().copied().collect();
        let inner: Vec<String> = lines
            .iter()
            .filter(|((a, b), _)| set.contains(a) && set.contains(b))
            .map(|((a, b), line)| {
                format!("{}:{line} -> {}", krate.files[*a].rel, krate.files[*b].rel)
            })
            .collect();
        problems.push(format!(
            "{name}: files import each other in a circle: {}",
            inner.join(", ")
        ));
    }
    problems
}

fn read_crate(dir: &Path, root: &str) -> Crate {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p
                    .strip_prefix(base)
                    .expect("inside src")
                    .to_string_lossy()
                    .replace('\\', "/");
                let src = std::fs::read_to_string(&p).expect("readable source");
                out.push((rel, src));
            }
        }
    }
    let mut sources = Vec::new();
    walk(dir, dir, &mut sources);
    load_crate(sources, root)
}

#[test]
fn layers_only_look_down_and_no_files_import_each_other() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut problems = Vec::new();
    for (name, root) in CRATES {
        let krate = read_crate(&crates_dir.join(name).join("src"), root);
        assert!(
            krate.files.len() > 3,
            "{name}: found only {} source files",
            krate.files.len()
        );
        let layers = (*name == "nodegrid").then_some(NODEGRID_LAYERS);
        problems.extend(check_crate(name, &krate, layers));
    }
    assert!(
        problems.is_empty(),
        "{} architecture problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The checker's own tests, on small made-up crates.

fn fake(files: &[(&str, &str)]) -> Crate {
    load_crate(
        files
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect(),
        "lib.rs",
    )
}

const TWO_LAYERS: &[Layer] = &[
    ("low", &["low/"], &[]),
    ("high", &["high.rs", "lib.rs"], &["low"]),
];

#[test]
fn an_upward_import_is_reported_with_its_line() {
    let k = fake(&[
        ("lib.rs", "mod low;\nmod high;\n"),
        ("low/mod.rs", "mod a;\npub use a::A;\n"),
        ("low/a.rs", "\n\nuse crate::high::H;\npub struct A;\n"),
        ("high.rs", "use crate::low::A;\npub struct H;\n"),
    ]);
    let p = check_crate("fake", &k, Some(TWO_LAYERS));
    assert!(
        p.contains(
            &"fake/src/low/a.rs:3 (low) imports high.rs (high), a layer it may not use".to_string()
        ),
        "{p:#?}"
    );
    // The re-export in low/mod.rs resolves to low/a.rs, so high.rs ↔ low/a.rs is the cycle.
    assert!(
        p.iter().any(
            |l| l.starts_with("fake: files import each other in a circle: ")
                && l.contains("high.rs:1 -> low/a.rs")
                && l.contains("low/a.rs:3 -> high.rs")
        ),
        "{p:#?}"
    );
}

#[test]
fn cycles_through_super_inline_paths_and_nested_use_trees_are_found() {
    let k = fake(&[
        ("lib.rs", "mod m;\n"),
        ("m/mod.rs", "mod x;\nmod y;\npub fn f() { x::g(); }\n"),
        ("m/x.rs", "pub fn g() { super::y::h(); }\n"),
        (
            "m/y.rs",
            "use crate::{m::{self as mm}};\npub fn h() { mm::f(); }\n",
        ),
    ]);
    let p = check_crate("fake", &k, None);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].contains("m/mod.rs:3 -> m/x.rs"), "{}", p[0]);
    assert!(p[0].contains("m/x.rs:1 -> m/y.rs"), "{}", p[0]);
    assert!(p[0].contains("m/y.rs:1 -> m/mod.rs"), "{}", p[0]);
}

#[test]
fn comments_strings_and_downward_imports_are_not_problems() {
    let k = fake(&[
        ("lib.rs", "mod low;\nmod high;\n"),
        ("low/mod.rs", "pub struct L;\n"),
        (
            "low/b.rs",
            "// use crate::high::H;\n/* crate::high::H */\nconst S: &str = \"crate::high::H\";\nconst R: &str = r#\"crate::high::H\"#;\nfn f<'a>(c: char) -> bool { c == '\"' }\n",
        ),
        ("high.rs", "use crate::low::L;\nfn f() -> crate::low::L { L }\n"),
    ]);
    assert_eq!(
        check_crate("fake", &k, Some(TWO_LAYERS)),
        Vec::<String>::new()
    );
    assert_eq!(k.edges().len(), 2);
}
