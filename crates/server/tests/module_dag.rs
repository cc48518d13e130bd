//! The server crate's top-level modules must form a DAG: every `crate::<module>` path a module names
//! (outside its unit tests) is an edge, and no chain of edges may come back to where it started. Run it
//! alone with `cargo test -p keel-server --test module_dag`; a failure prints the cycle, file by file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// module -> (module it names -> files that name it).
fn imports(src: &Path) -> Graph {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs").to_string();
        if module != "main" && module != "lib" {
            modules.insert(module);
        }
    }
    let mut graph: Graph = modules.iter().map(|module| (module.clone(), BTreeMap::new())).collect();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap().to_string_lossy().into_owned();
        let from = relative.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        if !modules.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for to in named_modules(&code_of(&text)) {
            if to != from && modules.contains(&to) {
                graph.get_mut(&from).unwrap().entry(to).or_default().insert(relative.clone());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    files
}

/// The code of a file without comments and without its `#[cfg(test)]` module (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(tests) => &text[..tests],
        None => text,
    };
    text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every module named as `crate::module` or inside `crate::{a, b::c}`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                named.insert(name);
            }
        } else {
            named.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    named
}

/// A cycle as a list of modules (first = last), if the graph has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(node: &str, graph: &Graph, marks: &mut BTreeMap<String, Mark>, path: &mut Vec<String>) -> bool {
        match marks.get(node) {
            Some(Mark::Done) => return false,
            Some(Mark::Open) => {
                let start = path.iter().position(|step| step == node).unwrap();
                path.drain(..start);
                path.push(node.to_string());
                return true;
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(|edges| edges.keys()) {
            if visit(next, graph, marks, path) {
                return true;
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        false
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if visit(node, graph, &mut marks, &mut path) {
            return Some(path);
        }
    }
    None
}

#[test]
fn server_modules_form_a_dag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(graph.len() >= 10, "expected the server's modules, found {:?}", graph.keys());
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|pair| format!("  {} -> {} (in {:?})", pair[0], pair[1], graph[&pair[0]][&pair[1]]))
            .collect();
        panic!("the server's modules import each other in a cycle:\n{}", steps.join("\n"));
    }
    for (module, edges) in &graph {
        println!("{module} -> {:?}", edges.keys().collect::<Vec<_>>());
    }
}

#[test]
fn the_checker_finds_cycles_and_reads_imports() {
    let code = "use crate::{alpha, beta::Thing};\nlet x = crate::gamma::f(); // crate::delta\n";
    let named: Vec<String> = named_modules(&code_of(code)).into_iter().collect();
    assert_eq!(named, ["alpha", "beta", "gamma"]);
    let edge = |from: &str, to: &str| (from.to_string(), [(to.to_string(), BTreeSet::new())].into());
    let cyclic: Graph = [edge("a", "b"), edge("b", "c"), edge("c", "a")].into();
    assert_eq!(find_cycle(&cyclic).unwrap(), ["a", "b", "c", "a"]);
    let acyclic: Graph = [edge("a", "b"), edge("b", "c"), edge("c", "d")].into();
    assert_eq!(find_cycle(&acyclic), None);
}
