//! Dependencies between the core's top-level modules run one way (issue 11).
//!
//! Reads `src/**/*.rs` (test code aside: `#[cfg(test)]` items and files
//! named `tests*.rs`), collects the `crate::<module>` paths of each
//! top-level module (names imported through the root's `pub use` list count
//! for the module that defines them) and asserts that the graph has no
//! cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source without comments, string and char literals (replaced by
/// blanks), so that braces and `crate::` inside them do not count.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &src[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(b.len(), |n| i + n + 2);
            i = end;
        } else if rest.starts_with("r#\"")
            || rest.starts_with("r\"")
            || rest.starts_with("br\"")
            || rest.starts_with("br#\"")
        {
            let start = rest.find('r').unwrap() + 1;
            let hashes = rest[start..].bytes().take_while(|&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = start + hashes + 1;
            let end = rest[body..]
                .find(&close)
                .map_or(b.len(), |n| i + body + n + close.len());
            out.push_str("\"\"");
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let is_char =
                (i + 2 < b.len() && b[i + 1] != b'\\' && rest[1..].chars().nth(1) == Some('\''))
                    || (i + 1 < b.len() && b[i + 1] == b'\\');
            if is_char {
                let mut j = i + 1;
                if b[j] == b'\\' {
                    j += 2;
                }
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                out.push_str("' '");
                i = j + 1;
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `src` (stripped) without the items marked `#[cfg(test)]`.
fn without_tests(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let semi = item.find(';').unwrap_or(item.len());
        let brace = item.find('{').unwrap_or(item.len());
        let end = if semi < brace {
            semi + 1
        } else {
            let mut depth = 0;
            let mut end = item.len();
            for (k, c) in item[brace..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = brace + k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            end
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn ident(s: &str) -> &str {
    let n = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..n]
}

/// The first identifier of each element of a `{ a, b::c, d::{e, f} }`
/// group; `s` starts just after the `{`.
fn group_heads(s: &str) -> Vec<&str> {
    let mut heads = Vec::new();
    let mut depth = 1;
    let mut expect = true;
    for (k, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect = true,
            c if expect && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                heads.push(ident(&s[k..]));
                expect = false;
            }
            _ => {}
        }
    }
    heads
}

/// The names `lib.rs` re-exports, and the module each comes from.
fn root_names(lib: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut rest = lib;
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let module = ident(rest).to_string();
        let after = &rest[module.len()..];
        if let Some(group) = after.strip_prefix("::{") {
            for name in group_heads(group) {
                names.insert(name.to_string(), module.clone());
            }
        } else if let Some(path) = after.strip_prefix("::") {
            let end = path.find(';').unwrap_or(path.len());
            let last = path[..end].rsplit("::").next().unwrap_or("").trim();
            names.insert(last.to_string(), module.clone());
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::` graph between the top-level modules, test code aside.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = without_tests(&strip(
        &std::fs::read_to_string(src.join("lib.rs")).unwrap(),
    ));
    let roots = root_names(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        if rel == Path::new("lib.rs") || name.starts_with("tests") {
            continue;
        }
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let module = first.trim_end_matches(".rs").to_string();
        let text = without_tests(&strip(&std::fs::read_to_string(&file).unwrap()));
        let deps = graph.entry(module.clone()).or_default();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("crate::") {
            let before = &rest[..at];
            rest = &rest[at + "crate::".len()..];
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::`, `mycrate::`
            }
            let heads = match rest.strip_prefix('{') {
                Some(group) => group_heads(group),
                None => vec![ident(rest)],
            };
            for head in heads {
                let target = roots.get(head).cloned().unwrap_or_else(|| head.to_string());
                if target != module && !target.is_empty() {
                    deps.insert(target);
                }
            }
        }
    }
    graph
}

/// One cycle of `graph`, if it has any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn shown(graph: &Graph) -> String {
    graph
        .iter()
        .map(|(m, deps)| {
            format!(
                "  {m} -> {}\n",
                deps.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

#[test]
fn the_checker_sees_a_cycle_and_skips_test_code() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);

    let src = "use crate::{a::X, b};\n// crate::c\nlet s = \"crate::d {\";\nlet c = '{';\n\
               #[cfg(test)]\nmod tests { use crate::e; fn f() { } }\n#[cfg(test)]\nmod tests_x;\nuse crate::f::Y;";
    let text = without_tests(&strip(src));
    assert!(
        text.contains("crate::{a::X, b}") && text.contains("crate::f::Y"),
        "{text}"
    );
    assert!(
        !text.contains("crate::c") && !text.contains("crate::d") && !text.contains("crate::e"),
        "{text}"
    );
}

#[test]
fn top_level_modules_import_each_other_one_way() {
    let graph = graph();
    assert!(
        graph.contains_key("broker") && graph.contains_key("plan"),
        "{}",
        shown(&graph)
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle: {}\nthe graph:\n{}",
            cycle.join(" -> "),
            shown(&graph)
        );
    }
}

/// The layers of the "Layers" list in lib.rs's crate docs: from each
/// `//! N. ` line, the backquoted names before its colon.
fn layers() -> BTreeMap<String, usize> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let list = lib
        .split("//! ## Layers")
        .nth(1)
        .expect("lib.rs has a Layers section");
    let mut layers = BTreeMap::new();
    for line in list.lines().skip(1).take_while(|l| l.starts_with("//!")) {
        let line = line.trim_start_matches("//!").trim();
        let Some((n, rest)) = line.split_once(". ") else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else { continue };
        let names = rest.split(':').next().unwrap();
        for name in names.split(',') {
            layers.insert(name.trim().trim_matches('`').to_string(), n);
        }
    }
    layers
}

#[test]
fn top_level_modules_import_only_the_layers_above_them() {
    let graph = graph();
    let layers = layers();
    assert!(layers.len() >= 10, "{layers:?}");
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let Some(own) = layers.get(module) else {
            wrong.push(format!("{module} is in no layer of lib.rs's list"));
            continue;
        };
        for dep in deps {
            match layers.get(dep) {
                Some(layer) if layer < own => {}
                Some(layer) => wrong.push(format!(
                    "{module} (layer {own}) imports {dep} (layer {layer})"
                )),
                None => wrong.push(format!("{dep} is in no layer of lib.rs's list")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nthe graph:\n{}",
        wrong.join("\n"),
        shown(&graph)
    );
}
