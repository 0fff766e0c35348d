//! The README's Rust snippets compile: each ```rust block of README.md must appear in
//! `examples/readme.rs` (which every build compiles), line for line up to indentation.

/// The lines of `text`, trimmed, blank ones left out.
fn normalized(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

#[test]
fn every_readme_snippet_is_compiled_by_examples_readme() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/examples/readme.rs")).unwrap();
    let example = normalized(&example);
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rust") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap().join("\n")),
            (Some(b), _) => b.push(line),
            _ => {}
        }
    }
    assert!(blocks.len() >= 5, "README.md has {} rust blocks", blocks.len());
    for block in &blocks {
        let want = normalized(block);
        let found = example.windows(want.len()).any(|w| w == want.as_slice());
        assert!(found, "this README snippet is not in examples/readme.rs (copy it there so it compiles):\n{block}");
    }
}
