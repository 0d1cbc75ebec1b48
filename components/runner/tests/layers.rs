//! The runner's modules form layers: each uses only modules of the layers
//! below its own, so no module uses one that uses it back. The layers are
//! the drawing at the top of `src/lib.rs`, one line per layer, top first;
//! this test reads it, then every file's `crate::`, `super::` and `self::`
//! paths (in `use`s and in code, tests included), so that an import up or
//! across cannot slip in unnoticed, nor can the drawing go stale.
//!
//! A small lexer rather than a Rust parser: a path's meaning only needs the
//! tokens around it, once comments and string literals are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_uses_only_the_layers_below_its_own() {
    let src = source_dir();
    let layers = drawn_layers(&read(&src.join("lib.rs")));
    let files = module_files(&src);

    let drawn: Vec<&String> = layers.iter().flatten().collect();
    for module in files.keys() {
        let times = drawn.iter().filter(|drawn| **drawn == module).count();
        assert_eq!(
            times, 1,
            "the layers drawn in src/lib.rs name the module `{module}` {times} times, not once"
        );
    }
    for module in &drawn {
        assert!(
            files.contains_key(*module),
            "src/lib.rs draws `{module}`, which has no file"
        );
    }

    let mut violations = Vec::new();
    for (module, file) in &files {
        let text = read(file);
        for import in upward_imports(module, &text, &layers) {
            let relative = file.strip_prefix(&src).unwrap_or(file);
            violations.push(format!("src/{}:{import}", relative.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "modules that use a module of their own layer or one above (see the drawing in src/lib.rs):\n{}",
        violations.join("\n")
    );
}

/// The binary stays a thin shell over the library: all it calls is `main`.
#[test]
fn the_binary_only_calls_the_library_main() {
    let tokens = lex(&read(&source_dir().join("main.rs")));
    let used: Vec<String> = tokens
        .windows(3)
        .filter(|t| t[0].is_ident("runner") && t[1].is_punct("::"))
        .map(|t| t[2].text.clone())
        .collect();
    assert_eq!(
        used,
        ["main"],
        "src/main.rs uses more of the library than `main`"
    );
}

/// The checker itself: an import up, one across and one in a test module
/// are found; a comment, a string and the module's own items are not.
#[test]
fn the_check_finds_imports_up_and_across() {
    let layers = drawn_layers(
        "//! # Layers\n//! ```text\n//! cli\n//!  |\n//! otel   host\n//!  |\n//! routes\n//! ```\n",
    );
    let text = r#"
        // crate::cli in a comment
        use crate::{routes::Route, host::Host};
        use super::otel::Tracer;
        const NOTE: &str = "crate::cli";
        mod tests {
            use super::*;
            use crate::cli::Cli;
        }
    "#;
    let found = upward_imports("otel", text, &layers);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("3: `host`"), "{found:?}");
    assert!(found[1].starts_with("8: `cli`"), "{found:?}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The layers drawn in the `text` block under the `# Layers` heading of a
/// crate's `//!` documentation, bottom first. Lines of `|` only join them.
fn drawn_layers(lib_rs: &str) -> Vec<Vec<String>> {
    let doc: Vec<&str> = lib_rs
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    let heading = doc
        .iter()
        .position(|line| *line == "# Layers")
        .expect("src/lib.rs's documentation has a `# Layers` heading");
    let start = heading
        + doc[heading..]
            .iter()
            .position(|line| *line == "```text")
            .expect("a ```text drawing under `# Layers`")
        + 1;
    let end = start
        + doc[start..]
            .iter()
            .position(|line| *line == "```")
            .expect("the drawing's block ends");
    let mut layers: Vec<Vec<String>> = doc[start..end]
        .iter()
        .filter(|line| line.chars().any(|c| c.is_alphanumeric()))
        .map(|line| {
            line.split_whitespace()
                .map(|name| {
                    assert!(
                        name.split("::")
                            .all(|part| part.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
                        "{name:?} in the drawing of the layers is not a module path"
                    );
                    name.to_owned()
                })
                .collect()
        })
        .collect();
    layers.reverse();
    layers
}

/// Each module of the library and its file: `lib` for the crate root,
/// `otel` for `otel/mod.rs`, `otel::span` for `otel/span.rs`. `main.rs` is
/// the binary, a crate of its own.
fn module_files(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("the source folder is readable") {
            let path = entry.expect("a readable folder entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|last| last == "mod") {
                parts.pop();
            }
            let module = parts.join("::");
            if module != "main" {
                files.insert(module, path);
            }
        }
    }
    files
}

/// Each path of `text` (the file of `module`) that leads to a module of the
/// same layer or above, as `LINE: ...`.
fn upward_imports(module: &str, text: &str, layers: &[Vec<String>]) -> Vec<String> {
    let layer_of = |name: &str| {
        layers
            .iter()
            .position(|layer| layer.iter().any(|m| m == name))
    };
    let own_layer = layer_of(module).unwrap_or_else(|| panic!("`{module}` is not drawn"));
    let file_path: Vec<String> = if module == "lib" {
        Vec::new()
    } else {
        module.split("::").map(str::to_owned).collect()
    };

    let mut found = Vec::new();
    for (line, path) in paths(&lex(text), &file_path) {
        let used = owning_module(&path, layers);
        if used == module {
            continue;
        }
        let used_layer = layer_of(&used).expect("owning_module returns a drawn module");
        if used_layer >= own_layer {
            found.push(format!(
                "{line}: `{used}` (`{}`), not below `{module}`",
                path.join("::")
            ));
        }
    }
    found
}

/// The drawn module an absolute path is in: the longest that is a prefix of
/// it, the crate root (`lib`) if none is.
fn owning_module(path: &[String], layers: &[Vec<String>]) -> String {
    (1..=path.len())
        .rev()
        .map(|len| path[..len].join("::"))
        .find(|name| layers.iter().flatten().any(|m| m == name))
        .unwrap_or_else(|| "lib".to_owned())
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    line: usize,
    ident: bool,
}

impl Token {
    fn is_ident(&self, name: &str) -> bool {
        self.ident && self.text == name
    }

    fn is_punct(&self, punct: &str) -> bool {
        !self.ident && self.text == punct
    }
}

/// Identifiers and punctuation (`::` as one token) with their lines;
/// comments, strings, characters, lifetimes and numbers are left out.
fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else if i >= chars.len() {
                    break;
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == '"' || (matches!(c, 'r' | 'b') && starts_string(&chars[i..])) {
            // Up to the opening quote: a prefix (`b`, `r`, `br`) and the hashes of a raw string.
            let raw = chars[i..]
                .iter()
                .take_while(|c| **c != '"')
                .any(|c| *c == 'r');
            let hashes = chars[i..]
                .iter()
                .take_while(|c| **c != '"')
                .filter(|c| **c == '#')
                .count();
            while chars[i] != '"' {
                i += 1;
            }
            i += 1;
            loop {
                match at(i) {
                    '\0' => break,
                    '\\' if !raw => {
                        line += usize::from(at(i + 1) == '\n');
                        i += 2;
                    }
                    '"' if chars[i + 1..].iter().take(hashes).all(|c| *c == '#')
                        && i + hashes < chars.len() =>
                    {
                        i += 1 + hashes;
                        break;
                    }
                    other => {
                        line += usize::from(other == '\n');
                        i += 1;
                    }
                }
            }
        } else if c == '\'' {
            // A character ('x', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                // Past the quote, the backslash and the escaped character.
                i += 3;
                while at(i) != '\'' && i < chars.len() {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            tokens.push(Token {
                text: chars[start..i].iter().collect(),
                line,
                ident: true,
            });
        } else if c.is_ascii_digit() {
            // A `.` only inside a number (`1.5`), not before a range's `..`
            // or a field.
            while at(i).is_alphanumeric()
                || at(i) == '_'
                || (at(i) == '.' && at(i + 1).is_ascii_digit())
            {
                i += 1;
            }
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token {
                text: "::".into(),
                line,
                ident: false,
            });
            i += 2;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                line,
                ident: false,
            });
            i += 1;
        }
    }
    tokens
}

/// Whether `b"`, `r"`, `r#"`, `br"` or `br#"` starts here (and not, say, an
/// identifier that begins with `r`, or the raw identifier `r#type`).
fn starts_string(chars: &[char]) -> bool {
    let prefix = match chars {
        ['b', 'r', ..] => 2,
        ['b' | 'r', ..] => 1,
        _ => return false,
    };
    let hashes = if chars[prefix - 1] == 'r' {
        chars[prefix..].iter().take_while(|c| **c == '#').count()
    } else {
        0
    };
    chars.get(prefix + hashes) == Some(&'"')
}

/// The absolute paths (`crate::`-relative segments) that the `crate::`,
/// `super::` and `self::` paths of a file lead to, with their lines.
/// `file_path` is the file's module path; inline modules (`mod tests {`)
/// nest inside it, so that their `super::` is the file's module.
fn paths(tokens: &[Token], file_path: &[String]) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut inline_modules: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        if token.is_ident("mod")
            && tokens.get(i + 1).is_some_and(|t| t.ident)
            && tokens.get(i + 2).is_some_and(|t| t.is_punct("{"))
        {
            inline_modules.push((tokens[i + 1].text.clone(), depth));
        } else if token.is_punct("{") {
            depth += 1;
        } else if token.is_punct("}") {
            depth -= 1;
            if inline_modules.last().is_some_and(|(_, at)| *at == depth) {
                inline_modules.pop();
            }
        }
        let starts_path = ["crate", "super", "self"].iter().any(|k| token.is_ident(k))
            && tokens.get(i + 1).is_some_and(|t| t.is_punct("::"))
            && !(i > 0 && tokens[i - 1].is_punct("::"));
        if starts_path {
            let current: Vec<String> = file_path
                .iter()
                .cloned()
                .chain(inline_modules.iter().map(|(name, _)| name.clone()))
                .collect();
            let mut relative = Vec::new();
            let end = path_tree(tokens, i, &mut Vec::new(), &mut relative);
            for segments in relative {
                found.push((token.line, resolve(&current, &segments)));
            }
            i = end;
            continue;
        }
        i += 1;
    }
    found
}

/// Reads the path starting at `tokens[i]`, `use` groups (`a::{b, c::d}`)
/// included, into `out` as one segment list per leaf; returns where it ends.
fn path_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let depth = prefix.len();
    loop {
        match tokens.get(i) {
            Some(t) if t.ident => {
                prefix.push(t.text.clone());
                i += 1;
            }
            Some(t) if t.is_punct("*") => i += 1,
            Some(t) if t.is_punct("{") => {
                i += 1;
                while tokens.get(i).is_some_and(|t| !t.is_punct("}")) {
                    i = path_tree(tokens, i, prefix, out);
                    // Past an `as name` to the next item.
                    while tokens
                        .get(i)
                        .is_some_and(|t| !t.is_punct(",") && !t.is_punct("}"))
                    {
                        i += 1;
                    }
                    if tokens.get(i).is_some_and(|t| t.is_punct(",")) {
                        i += 1;
                    }
                }
                i += 1;
                prefix.truncate(depth);
                return i;
            }
            _ => break,
        }
        if tokens.get(i).is_some_and(|t| t.is_punct("::")) {
            i += 1;
        } else {
            break;
        }
    }
    out.push(prefix.clone());
    prefix.truncate(depth);
    i
}

/// A path from the crate root, given the module `current` it is written in.
fn resolve(current: &[String], segments: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment.as_str() {
            "crate" if i == 0 => path.clear(),
            "self" if i == 0 => path = current.to_vec(),
            "super" if i == 0 => {
                path = current.to_vec();
                path.pop();
            }
            "super" => {
                path.pop();
            }
            "self" => {}
            _ => path.push(segment.clone()),
        }
    }
    path
}
