//! The README shows the custom-recipe example verbatim, so what users read is what `cargo test`
//! compiles.

#[test]
fn the_readme_shows_the_custom_recipe_example_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/custom_recipe.rs")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "README.md's custom recipe differs from recipes/examples/custom_recipe.rs"
    );
}
